"""A worker's copy of a shared tunnel (nbtunnel.client.worker_copy) closed
while it still logs in: nothing it made outlives it (Dask tears a plugin
down while its setup runs when a worker closes or it is unregistered)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from nbtunnel.client.worker_copy import WorkerCopy

from tests.rig import procs

pytestmark = pytest.mark.integration


def test_closing_while_it_logs_in_leaves_nothing_behind() -> None:
    # A server that accepts and never says a word: the login waits.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        line = f"-p {port} -o ConnectTimeout=30 -L 45999:db:5432 u@127.0.0.1"
        copy = WorkerCopy(line, "db", "nbtunnel-db-test", None)
        said = []
        opening = threading.Thread(target=lambda: said.append(copy.open("tcp://w:1")))
        opening.start()
        accepted, _ = silent.accept()  # it is logging in now
        deadline = time.monotonic() + 10
        while copy._manager is None or copy._manager.engine_pid is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        engine = copy._manager.engine_pid
        started = time.monotonic()
        copy.close()
        opening.join(15)
        assert not opening.is_alive()
        assert time.monotonic() - started < 10
        assert [s.state for s in said] == ["ended"]  # no failure of its own
        assert procs.wait_gone(engine, 10)
        with socket.socket() as probe:  # the port was never bound, or is free
            probe.bind(("127.0.0.1", 45999))
        accepted.close()
