"""The README as its readers meet it: on the package index, and on one screen.

The package index shows the README without the repository beside it, so a
relative link or picture is broken there; links into the repository are
absolute, and must name files that exist.  Nothing points outside the
repository.  The first screen says what nbtunnel is, how to set a machine
up, run the demo and run the tests, before anything else.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Where the repository's files are read from outside it.
REPO_FILES = (
    "https://github.com/nbtunnel/nbtunnel/blob/main/",
    "https://raw.githubusercontent.com/nbtunnel/nbtunnel/main/",
)
# A laptop screen shows about this many lines of the rendered page.
FIRST_SCREEN = 40

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return "#" + text.replace(" ", "-")


def test_every_link_works_where_the_readme_is_read_without_the_repository() -> None:
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", README, re.MULTILINE)}
    targets = LINK.findall(README)
    assert targets
    for target in targets:
        if target.startswith("#"):
            assert target in anchors, f"no heading for {target}"
            continue
        assert target.startswith("https://"), f"relative link {target}"
        for base in REPO_FILES:
            if target.startswith(base):
                path = target[len(base) :].split("#")[0]
                assert (ROOT / path).is_file(), f"{target}: no {path} in the repository"


def test_nothing_points_outside_the_repository() -> None:
    assert "shared/" not in README
    assert "../" not in README


def test_python_examples_are_written_as_a_person_writes_them() -> None:
    """Each example that is plain Python parses, and none carries the
    formatter's wrapping of a tuple of attributes (a lone "(" line)."""
    blocks = [body for lang, body in FENCE.findall(README) if lang == "python"]
    plain = [b for b in blocks if not re.search(r"^\s*\S*\s*=?\s*%", b, re.MULTILINE)]
    assert plain
    for body in plain:
        ast.parse(body)
        assert "\n(\n" not in "\n" + body, body


def test_the_first_screen_has_what_it_is_the_set_up_the_demo_and_the_tests() -> None:
    first = "\n".join(README.splitlines()[:FIRST_SCREEN])
    assert "SSH port forwarding" in first
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'" in first
    assert "apt-get install" in first
    assert ".venv/bin/nbtunnel demo" in first
    assert ".venv/bin/pytest" in first


def test_each_part_of_the_tests_says_how_to_run_it_and_how_long_it_takes() -> None:
    section = README.split("## Run the tests\n", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| ") and "pytest" in r]
    parts = {r.split("|")[1].strip() for r in rows}
    assert {"unit", "integration", "notebook", "browser"} <= parts
    for row in rows:
        took = row.rstrip(" |").rsplit("|", 1)[1]
        assert re.search(r"\d|seconds", took), row
    assert "TIME_" not in README
