"""The gate: paramiko's private internals, in one place and nowhere else.

paramiko has no public API for what nbtunnel needs from it: the OpenSSH
messages it lacks (``transport``: streamlocal channels and forwards,
``keepalive@openssh.com`` with a reply, the router of forwarded channels),
AES-GCM channel data in batches (``fastpath``, with its reading and sending
halves in ``gcm_read`` and ``gcm_send``), a channel's data straight to a
socket (``splice``), a fix for its re-key deadlock (``rekey``), a channel's
data and EOF never after its CLOSE (``ordered``), channel opens that no
thread waits for (``opening``) and an agent on a socket of ours
(``agent``); ``requests`` matches global requests to
their replies and routes ``-R`` channels.  Each reaches into names paramiko
may rename in any release; no module outside this folder does (the layout
test checks it), so a change of paramiko is met here: ``probe`` checks at
import that every name and behaviour each feature needs is there (and
cryptography's ``AESGCM.encrypt_into``), and turns off what is not, with
one line saying why (``probe.why_not``).  ``NBTUNNEL_FASTPATH=0`` turns the
speed-ups off.  It sits below the SSH layer, which uses it; the relay and
the embedded server use it too.
"""
