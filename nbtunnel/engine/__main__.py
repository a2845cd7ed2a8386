"""``python -m nbtunnel.engine``: the engine process the manager spawns."""

import sys

from .process import main

sys.exit(main())
