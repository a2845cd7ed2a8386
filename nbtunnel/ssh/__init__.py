"""The SSH layer: one paramiko connection to a server, and nothing above it.

``connection.Connection`` is what the engine holds: it dials (``dial``:
TCP, a ``ProxyCommand`` or a channel of the jump host before), checks the
server's host key (``host_keys``), logs in (``auth``, with ``keys`` and
``agent``), opens channels (``opens``: waiting for each, or not) and
routes the server's ``-R`` connections (``remote``), and
notices a dead server (``keepalive``); ``paramiko_log`` puts paramiko's
log records under nbtunnel's logger.  Each step is told to the tunnel's
``trace`` (its ``-v``; ``negotiated`` says what the handshake agreed), and
whatever the server said is escaped for a terminal (``printable``).
With the gate below it (``nbtunnel._paramiko``) this is the only layer
that imports paramiko (the embedded test server, a peer, is the other); it
uses paramiko's public API only, and whatever needs paramiko's internals is
asked of the gate.
"""
