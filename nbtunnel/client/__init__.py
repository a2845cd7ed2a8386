"""The caller's side: handles on what the engine runs, and the rules every face shares.

``manager.Manager`` starts the engine and keeps one handle per tunnel
(``handles``: :class:`Tunnel`, :class:`Forward`, which read their state from
the engine); ``rules`` decides what a line means among the tunnels already
open (the same line again is the same tunnel, the same destination joins
its connection, a fixed port held elsewhere is named with its holder).
``display`` and ``urls`` turn snapshots into tables, event lines and URLs;
``arguments`` checks what the public API is given; ``fit`` fits text
to a terminal's width.
The API, the magic, the CLI and the panel all go through here.
"""
