"""``python -m nbtunnel``: the same as the ``nbtunnel`` command."""

from .cli import main

main()
