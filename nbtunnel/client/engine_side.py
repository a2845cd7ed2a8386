"""The engine as one manager sees it: started on first use (again if it
died), and asked in typed requests.

``%load_ext nbtunnel`` starts it in the background: the engine's start (a
new Python importing paramiko, most of the time to a first open) then
overlaps the time until the next cell runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Literal

from ..engine.client import EngineClient, EventHandler, InlineClient, ProcessClient
from ..engine.protocol import Message
from ..errors import EngineError
from ..grammar.forwards import ForwardSpec
from ..settings.resolve import ConnectSettings, Prompt
from ..status import TunnelSnapshot

EngineMode = Literal["process", "inline"]


class EngineSide:
    """One manager's engine client: its (re)start and its requests."""

    def __init__(
        self,
        mode: EngineMode,
        on_event: EventHandler,
        on_lost: Callable[[str], None],
        on_died: Callable[[str], None] | None = None,
    ) -> None:
        self.mode = mode
        self._on_event = on_event
        self._on_lost = on_lost  # told when a dead engine is replaced
        self._on_died = on_died  # told as the engine dies, how it did
        # Held while an engine starts (up to HELLO_TIMEOUT), apart from the
        # manager's lock so that listing tunnels never waits for a start.
        self._starting = threading.Lock()
        self._client: EngineClient | None = None
        # Which engine is current: a dead one's exit event, read by its own
        # thread, may come after its successor started, and must not touch
        # the successor's tunnels.
        self._generation = 0
        self._swap = threading.Lock()
        self.closed = False  # set by the manager as it closes

    def running(self) -> EngineClient | None:
        """The engine client if its engine is alive, without starting one."""
        client = self._client
        return client if client is not None and client.alive else None

    @property
    def pid(self) -> int | None:
        client = self._client
        return client.pid if client is not None else None

    @property
    def death(self) -> str:
        """Why no engine runs: how the last one ended (killed by which
        signal, exited with which status), until a new one starts."""
        client = self._client
        death = client.death if client is not None else None
        return death or "the nbtunnel engine stopped"

    def get(self) -> EngineClient:
        """The running engine, started if need be (raises EngineError)."""
        with self._starting:
            return self._started()

    def _started(self) -> EngineClient:
        client = self._client
        if client is None or not client.alive:
            cls = ProcessClient if self.mode == "process" else InlineClient
            generation = self._generation + 1
            client = cls(lambda message: self._event(message, generation))
            with self._swap:
                old, self._client = self._client, client
                self._generation = generation
                if old is not None:
                    self._on_lost(old.death or "the nbtunnel engine stopped")
        return client

    def _event(self, message: Message, generation: int) -> None:
        if message.get("event") == "engine_exited":
            with self._swap:
                if generation != self._generation:
                    return  # replaced already: on_lost said how it ended
                if self._on_died is not None:
                    self._on_died(str(message.get("error")))
        self._on_event(message)

    def start_in_background(self) -> None:
        """Start it from a thread; a failure is tried again, and raised, by
        the next :meth:`get`."""

        def start() -> None:
            with self._starting, contextlib.suppress(EngineError):
                if not self.closed:
                    self._started()

        threading.Thread(
            target=start, name="nbtunnel-engine-start", daemon=True
        ).start()

    def close(self) -> None:
        """End the engine, after a start in progress (which would otherwise
        leave its engine behind)."""
        self.closed = True
        with self._starting:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- requests ---------------------------------------------------------

    def open(
        self,
        destination: str,
        settings: ConnectSettings,
        forwards: Sequence[ForwardSpec],
        name: str,
        prompt: Prompt | None,
        verbose: int = 0,
    ) -> TunnelSnapshot:
        """Open a tunnel (starting the engine if need be); its first snapshot.

        ``verbose`` (-v, -vv, -vvv) has the engine send its steps as log events.
        """
        result = self.get().request(
            "open",
            destination=destination,
            settings=settings.to_dict(),
            forwards=[[f.flag, f.text] for f in forwards],
            name=name,
            can_prompt=prompt is not None,
            on_prompt=prompt,
            verbose=verbose,
        )
        return TunnelSnapshot.from_dict(result)

    def add(
        self, tunnel_id: int, forwards: Sequence[ForwardSpec], verbose: int = 0
    ) -> TunnelSnapshot:
        """Start more forwards on a tunnel; its snapshot with them (their
        steps sent as log events at ``verbose``, as :meth:`open`'s)."""
        client = self.running()
        if client is None:
            raise EngineError("the nbtunnel engine is not running")
        result = client.request(
            "add",
            tunnel=tunnel_id,
            forwards=[[f.flag, f.text] for f in forwards],
            verbose=verbose,
        )
        return TunnelSnapshot.from_dict(result)

    def snapshots(self, tunnel_id: int | None = None) -> list[TunnelSnapshot] | None:
        """Every live tunnel's snapshot (or that one's, or none if it ended);
        None if no engine runs."""
        client = self.running()
        if client is None:
            return None
        try:
            if tunnel_id is None:
                found = client.request("snapshot")
            else:
                found = client.request("snapshot", tunnel=tunnel_id)
        except EngineError:
            if client.alive:
                raise
            return None  # it died just now: as if it had not been running
        return [TunnelSnapshot.from_dict(d) for d in found]

    def stop(self, tunnel_id: int, forward: int | None = None) -> None:
        """Stop a tunnel, or one of its forwards; nothing if no engine runs."""
        client = self.running()
        if client is None:
            return
        try:
            if forward is None:
                client.request("stop", tunnel=tunnel_id)
            else:
                client.request("stop_forward", tunnel=tunnel_id, forward=forward)
        except EngineError:
            if client.alive:
                raise  # a refusal from an engine still running
            # It died just now, and its tunnels with it: nothing to stop.
