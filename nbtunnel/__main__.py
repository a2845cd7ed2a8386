"""``python -m nbtunnel``: the same as the ``nbtunnel`` command."""

from .ui.cli import main

main()
