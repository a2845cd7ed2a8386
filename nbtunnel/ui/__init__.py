"""The faces: what a person types or clicks, turned into calls on the manager.

``magic`` (``%tunnel`` in a notebook), ``cli`` (the ``nbtunnel`` command),
``demo`` (the tour against the embedded server) and ``panel`` (the widget
panel), with ``help`` (their help text and ``-V``) and ``output`` (the
terminal's width, a reader that went away).  They parse, ask the manager
and show; the rules of what a line means live in the client layer below, so
every face behaves the same.
"""
