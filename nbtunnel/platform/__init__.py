"""Every difference between operating systems, in one place: socket options,
wake-ups, exclusive binds, keepalive timers, the engine's lifetime, new
process sessions, the ProxyCommand shell, the agent's transport, the
system's ssh paths, the limits on descriptors and threads (``limits``), and
which loopback a process shares with which (``place``), and who may share
a port (``port_claims``).
No other module branches on the platform.

Each helper probes the capability it needs (an attribute of ``socket``, a
function libc has, an option ``setsockopt`` accepts) instead of switching on
the platform's name, and reads it when called or when this package is
imported.  That is what lets the macOS and Windows emulation on Linux
(tests/emulation) run the very branches a Mac or a Windows machine runs: it
removes what those systems lack and the code here takes the other path.
Only where nothing can be probed (the agent's named pipe, ``%PROGRAMDATA%``)
is the name of the system consulted.

This is the bottom layer: it imports nothing else of nbtunnel.
"""
