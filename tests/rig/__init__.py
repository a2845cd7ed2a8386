"""Integration test rig: a real OpenSSH sshd and target services.

Usable outside pytest (benchmarks): ``from tests.rig import start_rig``.
pytest fixtures live in tests.rig.fixtures (registered by tests/conftest.py).
"""

from .clients import (
    echo_many,
    echo_roundtrip,
    echo_roundtrip_unix,
    http_get,
    port_is_closed,
    recv_all,
    sink_upload,
    source_download,
    wait_until,
)
from .data import chunks, expected_sha256, pattern
from .launcher import Targets, start_targets
from .netns import (
    NETNS_SKIP_REASON,
    ModeInfo,
    Netns,
    detect_mode,
    rig_links,
    rig_namespaces,
    sweep_stale,
)
from .openssh import OpenSshForward, openssh_forward
from .rig import Rig, raise_nofile_limit, start_rig
from .sshd import SshdStartError, SshServer, free_port, start_sshd

__all__ = [
    "NETNS_SKIP_REASON",
    "ModeInfo",
    "Netns",
    "OpenSshForward",
    "Rig",
    "SshServer",
    "SshdStartError",
    "Targets",
    "chunks",
    "detect_mode",
    "echo_many",
    "echo_roundtrip",
    "echo_roundtrip_unix",
    "expected_sha256",
    "free_port",
    "http_get",
    "openssh_forward",
    "pattern",
    "port_is_closed",
    "raise_nofile_limit",
    "recv_all",
    "rig_links",
    "rig_namespaces",
    "sink_upload",
    "source_download",
    "start_rig",
    "start_sshd",
    "start_targets",
    "sweep_stale",
    "wait_until",
]
