"""A LocalCluster in the kernel's own namespace: its workers share the
kernel's loopback, so each uses the kernel's forward rather than failing
"address in use" (tests/integration/test_dask.py has workers elsewhere)."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

import pytest
from nbtunnel import Manager

from tests.rig import postgres as pg

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.integration

SECRET = quote(pg.PASSWORD, safe="")
TEMPLATE = f"postgresql+psycopg://analyst:{SECRET}@db.internal:5432/sales"
TOTAL = sum(Decimal(amount) for _, _, amount in pg.ORDERS)


def test_a_local_cluster_works_through_the_kernels_own_forward(
    process_manager: Manager, sshd, postgres: pg.Postgres
) -> None:
    line = sshd.line("-L", f"0:127.0.0.1:{postgres.port}")
    with (
        process_manager.open(line) as t,
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        errors = t.share_with(client)
        assert errors == dict.fromkeys(cluster.scheduler_info["workers"])
        assert len(errors) == 2
        assert [s.reused for s in t.workers] == [True, True]
        assert "workers: up on 2 Dask workers" in repr(t)
        url = t.forwards[0].url(TEMPLATE)
        before = t.forwards[0].stats.connections_total
        frame = dd.read_sql_table("orders", url, index_col="id", npartitions=2)
        assert Decimal(str(frame.amount.sum().compute())) == TOTAL
        # The tasks' connections went through the kernel's own forward.
        assert t.forwards[0].stats.connections_total > before
        t.unshare(client)
