"""The engine: where every SSH connection and forward of one caller runs.

``core`` holds the tunnels and answers protocol requests; ``process`` runs
it as its own process (``python -m nbtunnel.engine``); ``client`` is the
caller's end, talking to that process or, inline, to a core in its threads.
Each open tunnel is a ``tunnel.RunningTunnel`` (the caller holds a
``Tunnel`` handle to it); ``reconnect`` gets it a new connection when it
loses one, ``link`` is that connection as its forwards see it, and
``pool`` shares connections between tunnels of the same settings;
``verbose`` turns a tunnel's ``-v`` steps into its log events.
"""
