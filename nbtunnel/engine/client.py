"""The caller's end of the engine: a spawned engine process, or an inline one."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from ..errors import EngineError
from ..platform import processes
from ..settings.resolve import Prompt
from .core import Engine
from .process import LOG_LEVEL_ENV, PARENT_ENV
from .protocol import HELLO, PROTOCOL, Message, decode, encode, error_from_dict

EventHandler = Callable[[Message], None]
HELLO_TIMEOUT = 30.0


def engine_path() -> list[str]:
    """The ``sys.path`` the engine gets: the caller's, in the caller's order
    (the user's PYTHONPATH first), so that it imports the same modules.

    Less the working directory (``''``, or its full name): the engine must
    not import a ``logging.py`` that happens to lie there.  nbtunnel's own
    root is added only where nbtunnel would not be imported from it
    otherwise: before the first entry that holds another nbtunnel, else
    last.
    """
    cwd = os.getcwd()
    paths = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != cwd]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    absolute = [os.path.abspath(p) for p in paths]
    if root in absolute:
        return paths
    for i, entry in enumerate(absolute):
        if os.path.exists(os.path.join(entry, "nbtunnel", "__init__.py")):
            return [*paths[:i], root, *paths[i:]]
    return [*paths, root]


def exit_reason(code: int) -> tuple[str, str | None]:
    """How the engine ended, from ``Popen``'s exit status (negative: the
    signal that killed it): a clause after "it", and the signal's name.  A
    SIGKILL nobody asked for is most often the OOM killer (or a container's
    memory limit): said as a possibility, ``kill -9`` looks the same."""
    if code >= 0:
        return f"it exited with status {code}", None
    with contextlib.suppress(ValueError):
        name = signal.Signals(-code).name
        memory = ", perhaps for lack of memory" if name == "SIGKILL" else ""
        return f"it was killed by {name} (signal {-code}){memory}", name
    return f"it was killed by signal {-code}", None


def engine_command() -> list[str]:
    """``python -m nbtunnel.engine`` with :func:`engine_path` as its path.

    ``-c`` rather than ``-m``: ``-m`` puts the working directory first and
    ``-P``, which would not, needs Python 3.11.  The code sets ``sys.path``
    before importing anything (``sys`` is built in).
    """
    code = (
        f"import sys; sys.path[:] = {engine_path()!r}; import runpy; "
        "runpy.run_module('nbtunnel.engine', run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", code]


class EngineClient:
    """What the manager talks to; both kinds answer the same requests."""

    pid: int

    def request(self, op: str, *, on_prompt: Prompt | None = None, **args: Any) -> Any:
        """Send one request and wait for its result (raising its error).

        ``on_prompt(text, secret)`` answers the questions the engine asks
        while serving it (a host key, a passphrase), in the calling thread.
        """
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        raise NotImplementedError

    @property
    def death(self) -> str | None:
        """Why its engine is gone, a sentence for its tunnels; None while it runs."""
        return None

    def close(self) -> None:
        raise NotImplementedError


def _result(reply: Message) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    raise error_from_dict(reply.get("error") or {})


class InlineClient(EngineClient):
    """The engine in the caller's own threads (the CLI, and debugging).

    In a busy notebook kernel the forwards then share the GIL with the
    user's code, which is why the manager defaults to the process.
    """

    def __init__(self, on_event: EventHandler) -> None:
        self._on_event = on_event
        self._engine = Engine(self._event)
        self.pid = os.getpid()
        self._closed = False
        self._ids = itertools.count(1)
        self._askers: dict[int, Prompt] = {}

    def _event(self, message: Message) -> None:
        if message.get("event") != "prompt":
            self._on_event(message)
            return
        # Asked from the thread serving the request, which is the caller's.
        asker = self._askers.get(int(message.get("request") or 0))
        answer = asker(str(message["text"]), bool(message["secret"])) if asker else None
        self._engine.handle(
            {"op": "answer", "prompt": message["prompt"], "answer": answer}
        )

    def request(self, op: str, *, on_prompt: Prompt | None = None, **args: Any) -> Any:
        if self._closed:
            raise EngineError("the inline engine is closed")
        request_id = next(self._ids)
        if on_prompt is not None:
            self._askers[request_id] = on_prompt
        try:
            return _result(self._engine.handle({"id": request_id, "op": op, **args}))
        finally:
            self._askers.pop(request_id, None)

    @property
    def alive(self) -> bool:
        return not self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.stop_all(final=True)


@dataclass
class _Pending:
    op: str
    done: threading.Event = field(default_factory=threading.Event)
    reply: Message | None = None
    abandoned: bool = False
    # Questions the engine asks while serving it, for the waiting caller.
    questions: queue.SimpleQueue[Message] = field(default_factory=queue.SimpleQueue)
    wake: threading.Event = field(default_factory=threading.Event)


class ProcessClient(EngineClient):
    """Spawns ``python -m nbtunnel.engine`` and talks to it over its stdin/stdout.

    The process is spawned from a thread of ours that lives as long as the
    engine (it reads the engine's output): ``PR_SET_PDEATHSIG`` fires when
    the *thread* that spawned a child exits, so spawning from whatever
    thread called ``open()`` could kill the engine when that thread ends.
    """

    def __init__(self, on_event: EventHandler) -> None:
        self._on_event = on_event
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._proc: subprocess.Popen[bytes] | None = None
        self._dead: str | None = None
        self._closing = False  # close() ends it: no event then
        self._ready = threading.Event()
        self._spawn_error: BaseException | None = None
        self.pid = 0
        self._reader = threading.Thread(
            target=self._run, name="nbtunnel-engine-io", daemon=True
        )
        self._reader.start()
        if not self._ready.wait(HELLO_TIMEOUT):
            self.close()
            raise EngineError(
                f"the nbtunnel engine did not start within {HELLO_TIMEOUT:g} s"
            )
        failure = self._startup_failure()
        if failure is not None:
            self._reader.join()
            raise EngineError(f"the nbtunnel engine could not start: {failure}")

    def _startup_failure(self) -> str | None:
        if self._spawn_error is not None:
            return str(self._spawn_error)
        return self._dead

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env[PARENT_ENV] = str(os.getpid())
        # The engine sends what the caller logs (at DEBUG, paramiko's too).
        env[LOG_LEVEL_ENV] = str(logging.getLogger("nbtunnel").getEffectiveLevel())
        return subprocess.Popen(
            engine_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
            # Its own session (process group on Windows): a Ctrl-C or a
            # kernel interrupt sent to our process group does not reach it.
            **processes.new_session(),
        )

    def _run(self) -> None:
        try:
            self._proc = self._spawn()
        except OSError as exc:
            self._spawn_error = exc
            self._ready.set()
            return
        proc = self._proc
        assert proc.stdout is not None
        try:
            self._read(proc.stdout)
        finally:
            # After a protocol mismatch the engine still waits on stdin.
            with self._write_lock, contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            code = proc.wait()
            proc.stdout.close()
            why, signame = exit_reason(code)
            self._fail_pending(why)
            self._ready.set()
            if self.pid and not self._closing:
                # Ended unasked (killed, crashed, out of memory): say how.
                with contextlib.suppress(Exception):
                    self._on_event(
                        {
                            "event": "engine_exited",
                            "pid": self.pid,
                            "status": code,
                            "signal": signame,
                            "error": self.death,
                        }
                    )

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            try:
                message = decode(line)
            except ValueError:
                continue
            if "hello" in message:
                if message.get("hello") != HELLO or message.get("protocol") != PROTOCOL:
                    self._dead = (
                        f"it speaks protocol {message.get('protocol')!r}, "
                        f"this nbtunnel speaks {PROTOCOL}"
                    )
                    return
                self.pid = int(message.get("pid", 0))
                self._ready.set()
            elif message.get("event") == "prompt":
                self._route_question(message)
            elif "event" in message:
                with contextlib.suppress(Exception):
                    self._on_event(message)
            elif "id" in message:
                self._deliver(message)

    def _route_question(self, message: Message) -> None:
        # To the thread waiting on the request that caused it: in a kernel,
        # only the cell's own thread may ask the frontend for input.
        with self._lock:
            pending = self._pending.get(int(message.get("request") or 0))
        if pending is None or pending.abandoned:
            self._answer(message, None)
            return
        pending.questions.put(message)
        pending.wake.set()

    def _answer(self, question: Message, answer: str | None) -> None:
        with contextlib.suppress(EngineError):
            ignored = self._send("answer", prompt=question["prompt"], answer=answer)
            ignored.abandoned = True  # nobody waits for its reply

    def _deliver(self, reply: Message) -> None:
        with self._lock:
            pending = self._pending.pop(int(reply["id"]), None)
        if pending is None:
            return
        if pending.abandoned:
            # The caller gave up waiting (Ctrl-C) on an open that then
            # succeeded: stop that tunnel rather than leave it unowned.
            result = reply.get("result")
            if pending.op == "open" and reply.get("ok") and isinstance(result, dict):
                with contextlib.suppress(EngineError):
                    self._send("stop", tunnel=result["id"])
            return
        pending.reply = reply
        pending.done.set()
        pending.wake.set()

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            if self._dead is None:
                self._dead = why
            pending = list(self._pending.values())
            self._pending.clear()
        for p in pending:
            p.done.set()
            p.wake.set()

    def _send(self, op: str, **args: Any) -> _Pending:
        with self._lock:
            if self._dead is not None:
                raise EngineError(self._gone(self._dead))
            request_id = self._next_id
            self._next_id += 1
            pending = self._pending[request_id] = _Pending(op)
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            with self._write_lock:
                proc.stdin.write(encode({"id": request_id, "op": op, **args}))
                proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            with self._lock:
                self._pending.pop(request_id, None)
            # The engine ended before the reader saw it: wait for the reader
            # to record how, so that `alive` is false once this raises and the
            # next start makes a new engine rather than reuse this one.
            if threading.current_thread() is not self._reader:
                self._reader.join(HELLO_TIMEOUT)
            why = self._startup_failure() or "its input is closed"
            raise EngineError(self._gone(why)) from None
        return pending

    def request(self, op: str, *, on_prompt: Prompt | None = None, **args: Any) -> Any:
        pending = self._send(op, **args)
        question: Message | None = None
        try:
            while not pending.done.is_set():
                pending.wake.wait()
                pending.wake.clear()
                while not pending.questions.empty():
                    question = pending.questions.get()
                    answer = (
                        on_prompt(str(question["text"]), bool(question["secret"]))
                        if on_prompt is not None
                        else None
                    )
                    self._answer(question, answer)
                    question = None
        except BaseException:
            pending.abandoned = True
            if question is not None:
                self._answer(question, None)  # interrupted while asking
            raise
        if pending.reply is None:
            raise EngineError(self._gone(self._dead))
        return _result(pending.reply)

    def _gone(self, why: str | None) -> str:
        return (
            f"the nbtunnel engine (pid {self.pid}) is gone: {why}; "
            "its tunnels are closed"
        )

    @property
    def alive(self) -> bool:
        return self._dead is None and self._reader.is_alive()

    @property
    def death(self) -> str | None:
        dead = self._dead
        return None if dead is None else self._gone(dead)

    def close(self, timeout: float = 10.0) -> None:
        """End the engine (end-of-file on its stdin) and wait for it. Idempotent."""
        self._closing = True
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            with self._write_lock, contextlib.suppress(OSError):
                proc.stdin.close()
        self._reader.join(timeout)
        if proc is not None and proc.poll() is None:
            proc.kill()
            self._reader.join()
