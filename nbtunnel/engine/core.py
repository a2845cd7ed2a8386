"""The engine: every live tunnel of one caller, driven by protocol requests."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ..errors import ForwardError, TunnelError
from ..grammar.forwards import parse_forward
from ..platform import limits
from ..settings.resolve import ConnectSettings, Prompt
from .pool import Pool
from .protocol import Message, error_to_dict
from .tunnel import RunningTunnel
from .verbose import forwards_up, tunnel_trace

EventSink = Callable[[Message], None]

# How long a question waits for its answer before counting as unanswered.
PROMPT_TIMEOUT = 300.0


class _Question:
    def __init__(self) -> None:
        self.answered = threading.Event()
        self.answer: str | None = None


class Prompts:
    """Questions for the person behind the caller, asked through events.

    The question travels as a ``prompt`` event naming the request it
    belongs to; the caller asks, and sends the answer back as an ``answer``
    request.  Answers are never logged or kept.
    """

    def __init__(self, emit: Callable[..., None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._waiting: dict[int, _Question] = {}
        self._next = 1
        self._closed = False

    def asker(self, request_id: object) -> Prompt:
        def ask(text: str, secret: bool) -> str | None:
            question = _Question()
            with self._lock:
                if self._closed:
                    return None
                prompt_id = self._next
                self._next += 1
                self._waiting[prompt_id] = question
            # Registered first: an inline caller answers inside emit().
            self._emit(
                "prompt", prompt=prompt_id, request=request_id, text=text, secret=secret
            )
            question.answered.wait(PROMPT_TIMEOUT)
            with self._lock:
                self._waiting.pop(prompt_id, None)
            return question.answer

        return ask

    def answer(self, prompt_id: int, answer: str | None) -> None:
        with self._lock:
            question = self._waiting.get(prompt_id)
        if question is not None:
            question.answer = answer
            question.answered.set()

    def close(self) -> None:
        """Every open question counts as unanswered; no new ones are asked."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting.values())
        for question in waiting:
            question.answered.set()


class Engine:
    """Owns the tunnels; :meth:`handle` answers one request (from any thread).

    The same object serves the engine process and the inline mode, so both
    run exactly the same code behind the protocol.
    """

    def __init__(self, emit: EventSink) -> None:
        self._emit_message = emit
        self._lock = threading.Lock()
        self._tunnels: dict[int, RunningTunnel] = {}
        self._next_id = 1
        self._closed = False
        self._prompts = Prompts(self._emit)
        self._pool = Pool()
        # Every forward costs descriptors (a listener takes five, each
        # client one), and the soft limit a notebook inherits can be 256:
        # the engine takes what the hard limit allows.  Here, so that the
        # engine process and the inline one (the CLI's) both do.
        limits.raise_fd_limit()

    def _emit(self, kind: str, **data: Any) -> None:
        self._emit_message({"event": kind, **data})

    def handle(self, request: Message) -> Message:
        """Answer one request; never raises."""
        reply: Message = {"id": request.get("id")}
        op = request.get("op")
        handler = getattr(self, f"_op_{op}", None) if isinstance(op, str) else None
        try:
            if handler is None:
                raise TunnelError(f"the engine does not know the request {op!r}")
            reply.update(ok=True, result=handler(request))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a reply
            # Out of descriptors or threads is no bug of ours: one line
            # naming the limit and what to do, not "internal error".
            shortage = limits.shortage(exc)
            error = ForwardError(shortage) if shortage is not None else exc
            reply.update(ok=False, error=error_to_dict(error))
        return reply

    def _op_ping(self, request: Message) -> Message:
        return {"pid": os.getpid()}

    def _op_open(self, request: Message) -> Message:
        settings = ConnectSettings.from_dict(request["settings"])
        forwards = tuple(
            parse_forward(flag, text) for flag, text in request["forwards"]
        )
        with self._lock:
            if self._closed:
                raise TunnelError("the engine is shutting down")
            tunnel_id = self._next_id
            self._next_id += 1
        name = str(request.get("name") or "")
        verbosity = int(request.get("verbose") or 0)  # -v, -vv, -vvv
        trace = tunnel_trace(self._emit, tunnel_id, name, verbosity)
        tunnel = RunningTunnel(
            tunnel_id,
            request["destination"],
            settings,
            forwards,
            self._emit,
            self._pool,
            name=name,
            prompt=self._prompts.asker(request.get("id"))
            if request.get("can_prompt")
            else None,
            trace=trace,
        )
        tunnel.start()
        if not self._register(tunnel):
            # A shutdown raced with this open: do not leave it behind.
            tunnel.stop()
            raise TunnelError("the engine is shutting down")
        snapshot = tunnel.snapshot()
        forwards_up(trace, snapshot.forwards)
        return snapshot.to_dict()

    def _register(self, tunnel: RunningTunnel) -> bool:
        with self._lock:
            self._tunnels[tunnel.id] = tunnel
            return not self._closed

    def _op_stop(self, request: Message) -> None:
        with self._lock:
            tunnel = self._tunnels.pop(int(request["tunnel"]), None)
        if tunnel is not None:
            tunnel.stop()

    def _live(self, request: Message) -> RunningTunnel:
        with self._lock:
            tunnel = self._tunnels.get(int(request["tunnel"]))
        if tunnel is None:
            raise TunnelError(f"no tunnel {request['tunnel']} is open")
        return tunnel

    def _op_add(self, request: Message) -> Message:
        tunnel = self._live(request)
        specs = tuple(parse_forward(flag, text) for flag, text in request["forwards"])
        # The forwards of a line with -v (one that joins a tunnel) say their
        # steps at that line's verbosity, or the tunnel's if it says more.
        verbosity = int(request.get("verbose") or 0)
        trace = tunnel.trace
        if verbosity > trace.verbosity:
            trace = tunnel_trace(self._emit, tunnel.id, tunnel.name, verbosity)
        tunnel.add(specs, trace)
        snapshot = tunnel.snapshot()
        forwards_up(trace, snapshot.forwards[len(snapshot.forwards) - len(specs) :])
        return snapshot.to_dict()

    def _op_stop_forward(self, request: Message) -> None:
        self._live(request).stop_forward(int(request["forward"]))

    def _op_snapshot(self, request: Message) -> list[Message]:
        wanted = request.get("tunnel")
        with self._lock:
            tunnels = list(self._tunnels.values())
        return [t.snapshot().to_dict() for t in tunnels if wanted in (None, t.id)]

    def _op_answer(self, request: Message) -> None:
        answer = request.get("answer")
        self._prompts.answer(
            int(request["prompt"]), answer if isinstance(answer, str) else None
        )

    def _op_stop_all(self, request: Message) -> None:
        self.stop_all()

    def stop_all(self, *, final: bool = False) -> None:
        """Stop every tunnel; with ``final``, refuse new ones from now on."""
        with self._lock:
            tunnels = list(self._tunnels.values())
            self._tunnels.clear()
            if final:
                self._closed = True
                self._prompts.close()
        for tunnel in tunnels:
            tunnel.stop()
