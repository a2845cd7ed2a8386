"""A tunnel opened with %tunnel, shared with a Dask cluster the kernel runs:
%tunnel's table says on how many workers it is up (tests/integration/test_dask.py
has workers on machines of their own)."""

from __future__ import annotations

import pytest

from tests.rig import clients

from .conftest import Kernel

pytest.importorskip("distributed")

pytestmark = [pytest.mark.integration, pytest.mark.notebook]


def test_tunnel_says_on_how_many_workers_a_shared_tunnel_is_up(
    kernel: Kernel, sshd, targets
) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    line = sshd.line("-L", f"0:{targets.host}:{targets.echo}")
    assert kernel.run(f"t = %tunnel {line}").ok
    started = kernel.run(
        "from distributed import Client, LocalCluster\n"
        "cluster = LocalCluster(n_workers=2, threads_per_worker=1,"
        " dashboard_address=None)\n"
        "client = Client(cluster)\n"
        "errors = t.share_with(client)",
        timeout=120,
    )
    assert started.ok, started.text
    assert kernel.value("list(errors.values())") == [None, None]
    listed = kernel.run("%tunnel")
    name = kernel.value("t.name")
    assert f"tunnel {name}: up on 2 Dask workers" in listed.text
    assert "up on 2 Dask workers" in listed.html()
    # A task on a worker reaches the server's echo through the kernel's port.
    port = kernel.value("t.forwards[0].listen_port")
    echoed = kernel.run(
        "from tests.rig import clients\n"
        f"print(client.submit(clients.echo_roundtrip, '127.0.0.1', {port},"
        " b'from a task', 10, pure=False).result())"
    )
    assert echoed.ok, echoed.text
    assert echoed.text.strip() == "b'from a task'"
    assert kernel.run("t.unshare(client)").ok
    assert "Dask" not in kernel.run("%tunnel").text
    assert kernel.run("client.close(); cluster.close()", timeout=60).ok
    assert clients.echo_roundtrip("127.0.0.1", port, b"still", 10) == b"still"
