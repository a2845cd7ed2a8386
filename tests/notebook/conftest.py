"""A real IPython kernel (jupyter_client) per test, and a helper to run code in it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Ran:
    """What one execute request gave: its reply and every output of that cell."""

    reply: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.reply["status"] == "ok")

    @property
    def text(self) -> str:
        """Streams, results and errors as a person would read them (no colours)."""
        parts: list[str] = []
        stream = None  # the stream the last part came from
        for msg in self.outputs:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                # The kernel may send one print in two messages (its text,
                # then the newline, when a flush falls between): a notebook
                # shows them as one text, and so does this.
                if stream == content["name"]:
                    parts[-1] += content["text"]
                else:
                    parts.append(content["text"])
                stream = content["name"]
                continue
            stream = None
            if msg["msg_type"] in ("execute_result", "display_data"):
                parts.append(content["data"].get("text/plain", ""))
            elif msg["msg_type"] == "error":
                parts.append("\n".join(content["traceback"]))
        return ANSI.sub("", "\n".join(parts))

    def html(self) -> str:
        return "".join(
            m["content"]["data"].get("text/html", "")
            for m in self.outputs
            if m["msg_type"] in ("execute_result", "display_data")
        )


@dataclass
class Kernel:
    km: KernelManager
    kc: BlockingKernelClient

    def run(
        self,
        code: str,
        timeout: float = 60.0,
        answers: list[str] | None = None,
        asked: list[tuple[str, bool]] | None = None,
    ) -> Ran:
        """Run code; ``answers`` (if given) are typed into its input requests,
        whose (prompt, password) go to ``asked``; without, input is refused."""
        outputs: list[dict[str, Any]] = []
        typed = list(answers or [])

        def type_in(msg: dict[str, Any]) -> None:
            if asked is not None:
                asked.append((msg["content"]["prompt"], msg["content"]["password"]))
            self.kc.input(typed.pop(0) if typed else "")

        reply = self.kc.execute_interactive(
            code,
            timeout=timeout,
            output_hook=outputs.append,
            allow_stdin=answers is not None,
            stdin_hook=type_in,
        )
        shown = ("stream", "execute_result", "display_data", "error")
        return Ran(reply["content"], [m for m in outputs if m["msg_type"] in shown])

    def value(self, expression: str) -> Any:
        """The Python literal the kernel prints for ``expression``."""
        ran = self.run(f"print(repr({expression}))")
        assert ran.ok, ran.text
        import ast

        return ast.literal_eval(ran.text.strip())

    @property
    def pid(self) -> int:
        return int(self.km.provisioner.process.pid)  # type: ignore[union-attr]


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    km = KernelManager(kernel_name="python3")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    km.start_kernel(cwd=str(tmp_path), env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield Kernel(km, kc)
    finally:
        kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)
