"""The gate's probe: each feature on, or off with one line saying which
paramiko or cryptography lacks what (nbtunnel/_paramiko/probe.py).

A missing name is made real in a separate Python that deletes it from
paramiko (or cryptography) before the probe runs, as a release that
renamed it would leave it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cryptography
import paramiko
import pytest
from nbtunnel._paramiko import probe

ROOT = Path(__file__).resolve().parents[2]


def _report(before: str) -> dict[str, str | None]:
    """probe.report() in a Python that first ran ``before``."""
    code = textwrap.dedent(before) + textwrap.dedent(
        """
        import json
        from nbtunnel._paramiko import probe
        print(json.dumps(probe.report()))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(probe.SWITCH, None)
    ran = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    report: dict[str, str | None] = json.loads(ran.stdout)
    return report


def test_each_feature_is_on_or_says_why_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(probe.SWITCH, raising=False)
    assert set(probe.report()) == set(probe.FEATURES)
    for feature, why in probe.report().items():
        assert probe.available(feature) == (why is None) == probe.supported(feature)
        if why is not None:
            assert "\n" not in why
            assert f"paramiko {paramiko.__version__}" in why or (
                f"cryptography {cryptography.__version__}" in why
            )


@pytest.mark.parametrize("value", ["0", "no", "off", "False"])
def test_the_switch_turns_off_the_speedups_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(probe.SWITCH, value)
    for feature in probe.FEATURES:
        if feature in probe.SPEEDUPS:
            assert not probe.available(feature)
            assert probe.why_not(feature) == (
                f"NBTUNNEL_FASTPATH={value} turns "
                + ("the fast path" if feature == "fastpath" else "the relay's splice")
                + (
                    " (batched AES-GCM packets) off"
                    if feature == "fastpath"
                    else " (channel data straight to the socket) off"
                )
            )
        else:
            assert probe.available(feature) == probe.supported(feature)


@pytest.mark.parametrize("value", ["1", "yes", ""])
def test_other_values_leave_them_on(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(probe.SWITCH, value)
    for feature in probe.SPEEDUPS:
        assert probe.available(feature) == probe.supported(feature)


def test_an_unknown_feature_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown feature 'fast_path'"):
        probe.available("fast_path")


def test_missing_names_turn_off_only_the_features_that_need_them() -> None:
    report = _report(
        """
        import paramiko
        del paramiko.Channel._check_add_window
        del paramiko.packet.Packetizer._trigger_rekey
        del paramiko.Transport._next_channel
        del paramiko.agent.AgentSSH._close
        """
    )
    version = f"paramiko {paramiko.__version__}"
    assert report["splice"] == (
        "the relay's splice (channel data straight to the socket) needs "
        f"Channel._check_add_window, which {version} does not have; the relay "
        "reads and writes the channel as paramiko's API does"
    )
    assert report["streamlocal"] == (
        f"forwarding unix sockets needs Transport._next_channel, which {version} "
        "does not have; use a TCP port instead"
    )
    assert report["agent"] is not None and "AgentSSH._close" in report["agent"]
    if probe.supported("fastpath"):
        assert report["fastpath"] is not None
        assert "Packetizer._trigger_rekey" in report["fastpath"]
    for feature in ("rekey", "keepalive", "route_forwarded"):
        assert report[feature] == probe.lacking(feature)


def test_cryptography_without_encrypt_into_turns_off_the_fast_path() -> None:
    report = _report(
        """
        from cryptography.hazmat.primitives.ciphers import aead
        if hasattr(aead.AESGCM, "encrypt_into"):
            del aead.AESGCM.encrypt_into
        """
    )
    assert report["fastpath"] == (
        "the fast path (batched AES-GCM packets) needs AESGCM.encrypt_into "
        f"(from cryptography 47.0), which cryptography {cryptography.__version__} "
        "does not have; paramiko's own packets carry the data"
    )
    assert report["splice"] == probe.lacking("splice")


@pytest.mark.skipif(
    not probe.supported("fastpath"), reason=str(probe.lacking("fastpath"))
)
def test_a_changed_behaviour_is_caught_by_the_round_trip() -> None:
    # The names are all there, but the nonce no longer counts as the fast
    # path counts it: the probe's round trip over loopback finds out.
    report = _report(
        """
        import paramiko
        paramiko.packet.Packetizer._inc_iv_counter = lambda self, iv: iv
        """
    )
    assert report["fastpath"] is not None
    assert "Mismatched MAC" in report["fastpath"]
