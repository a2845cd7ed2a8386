"""Host certificates judged against @cert-authority lines (real ssh-keygen output)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from nbtunnel.settings.resolve import ConnectSettings
from nbtunnel.ssh.host_keys import HostKeyCheck


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True
    )
    return path


def _certificate(tmp_path: Path, *options: str) -> tuple[Path, bytes]:
    ca = _keygen(tmp_path / "ca")
    host = _keygen(tmp_path / "host")
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "h", "-h", *options, f"{host}.pub"],
        check=True,
    )
    blob = base64.b64decode(Path(f"{host}-cert.pub").read_text().split()[1])
    return ca, blob


def _host_keys(tmp_path: Path, ca: Path, host: str = "db.example") -> HostKeyCheck:
    known = tmp_path / "known_hosts"
    ca_pub = Path(f"{ca}.pub").read_text().split()[:2]
    known.write_text(f"@cert-authority *.example {' '.join(ca_pub)}\n")
    settings = ConnectSettings(host=host, known_hosts_files=(str(known),))
    return HostKeyCheck(settings, None)


def test_a_good_certificate_is_trusted(tmp_path: Path) -> None:
    ca, blob = _certificate(tmp_path, "-n", "db.example")
    assert _host_keys(tmp_path, ca).check_certificate(blob) == ""


def test_a_tampered_certificate_does_not_verify(tmp_path: Path) -> None:
    ca, blob = _certificate(tmp_path, "-n", "db.example")
    # The key id "h" (one byte, inside what the CA signed) becomes "H".
    index = blob.index(b"\x00\x00\x00\x01h")
    tampered = blob[: index + 4] + b"H" + blob[index + 5 :]
    why = _host_keys(tmp_path, ca).check_certificate(tampered)
    assert why == "its signature does not verify"


def test_the_reasons_a_certificate_is_not_trusted(tmp_path: Path) -> None:
    ca, blob = _certificate(tmp_path, "-n", "db.example")
    assert "not other.example" in _host_keys(
        tmp_path, ca, "other.example"
    ).check_certificate(blob)
    assert _host_keys(tmp_path, ca, "db.elsewhere").check_certificate(blob) == (
        "no @cert-authority line for this host names its signer"
    )
    assert "cannot be read" in _host_keys(tmp_path, ca).check_certificate(b"junk")
