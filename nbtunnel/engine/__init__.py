"""The engine: where every SSH connection and forward of one caller runs.

``core`` holds the tunnels and answers protocol requests; ``process`` runs
it as its own process (``python -m nbtunnel.engine``); ``client`` is the
caller's end, talking to that process or, inline, to a core in its threads.
"""
