"""``python -m nbtunnel.engine``: the engine process the manager spawns."""

import sys

# paramiko imports invoke (a task runner: a third of paramiko's import time,
# about 60 ms of every cold start) only for ``Match exec`` in its own
# ssh_config parser, which nbtunnel never uses (sshconfig.py reads the
# files); a None entry makes that import fail as paramiko expects it may.
sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]

from .process import main  # noqa: E402

sys.exit(main())
