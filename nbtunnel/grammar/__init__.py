"""The grammar: ssh's command line as data, and nothing else.

``parse("-L 0:db:5432 -J bastion user@host")`` gives a :class:`TunnelSpec`
of frozen dataclasses, or raises ``SpecError`` quoting the bad part.  Pure:
no file, socket, process or paramiko is touched here, so every other layer
(and the tests, by the thousand with hypothesis) can lean on it.
``spec`` reads the whole line; ``forwards`` the argument of ``-L``/``-R``/
``-D``; ``destinations`` the host to reach and the ``-J`` hops; ``flags``
holds ssh's tables (which flags take a value, the ``-o`` keys we know, the
accepted forms of each forward) and the checks of single values;
``hostnames`` says why a name cannot be looked up, and ``suggest`` which
known word a mistyped one was probably meant to be (``ssh_keywords``: the
ssh options that are real, not typos, though nbtunnel lacks them).
"""
