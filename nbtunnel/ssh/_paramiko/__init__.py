"""paramiko's private internals, in one place.

paramiko has no public API for what nbtunnel needs from it: the OpenSSH
messages it lacks (``transport``: streamlocal channels and forwards,
``keepalive@openssh.com`` with a reply), AES-GCM channel data in batches
(``fastpath``), a channel's data straight to a socket (``splice``), and a
fix for its re-key deadlock (``rekey``).  Each reaches into names paramiko
may rename in any release; no module outside this folder does, so a change
of paramiko is met here.
"""
