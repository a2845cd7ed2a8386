"""%tunnel? in a real kernel: the forms, the options, examples, and a way to
try it with the embedded server that works as written."""

from __future__ import annotations

import pytest
from nbtunnel.grammar.flags import ACCEPTED_FORMS, SUPPORTED_OPTIONS
from nbtunnel.ui.magic import USAGE

from .conftest import Kernel

pytestmark = pytest.mark.notebook


def _paged(kernel: Kernel, code: str) -> str:
    """What IPython's pager shows for ``code`` (``%tunnel?``)."""
    ran = kernel.run(code)
    assert ran.ok, ran.text
    pages = [p["data"]["text/plain"] for p in ran.reply["payload"] if "data" in p]
    assert len(pages) == 1, ran.reply
    return str(pages[0])


def test_the_question_mark_shows_the_whole_help(kernel: Kernel) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    page = _paged(kernel, "%tunnel?")
    for flag, forms in ACCEPTED_FORMS.items():
        for form in forms:
            assert f"  {flag} {form}" in page, (flag, form)
    assert ", ".join(SUPPORTED_OPTIONS) in " ".join(page.split())
    assert "t = %tunnel -J you@bastion.example.com -L 0:localhost:5432" in page
    assert "EmbeddedServer().start()" in page
    # An error's usage is the magic's, -V the version.
    bad = kernel.run("%tunnel -Z user@host")
    assert bad.reply["ename"] == "UsageError"
    assert "usage: %tunnel [-46CfgNnTVv]" in bad.reply["evalue"]
    assert "usage: nbtunnel" not in bad.reply["evalue"]
    assert kernel.run("%tunnel -V").text.startswith("nbtunnel ")


def _try_it() -> list[str]:
    """The help's own lines for trying it with the embedded server."""
    lines = USAGE.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("try it here"))
    body = [line for line in lines[start + 1 :] if line.startswith("  ")]
    return [line.strip().split("  #")[0] for line in body]


def test_the_try_it_lines_work_as_written(kernel: Kernel) -> None:
    lines = _try_it()
    assert lines[0] == "from nbtunnel.testing import EmbeddedServer, PrivateService"
    *opening, stop_all, stop_servers = lines
    assert kernel.run("%load_ext nbtunnel").ok
    for line in opening:
        ran = kernel.run(line)
        assert ran.ok, (line, ran.text)
    page = kernel.run(
        "import urllib.request\n"
        "print(urllib.request.urlopen(t.forwards[0].browser_url(), timeout=10).status)"
    )
    assert page.text.strip() == "200", page.text
    for line in (stop_all, stop_servers):
        ran = kernel.run(line)
        assert ran.ok, (line, ran.text)
    assert kernel.value("t.state") == "stopped"
