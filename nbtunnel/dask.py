"""Dask: the same forward on every worker of a cluster.

::

    t = %tunnel -L 0:db.internal:5432 -J login analyst@warehouse
    client.register_plugin(nbtunnel.dask.TunnelPlugin(t))   # or t.share_with(client)
    url = t.forwards[0].url("postgresql+psycopg://analyst@db.internal:5432/sales")
    dd.read_sql_table("orders", url, index_col="id").amount.sum().compute()

Needs ``distributed`` (``pip install 'nbtunnel[dask]'``); ``import nbtunnel``
never imports it.  How it works, and what travels: :mod:`nbtunnel.client.dask`.
"""

from .client.dask import TOPIC, TunnelPlugin
from .errors import WorkerError

__all__ = ["TOPIC", "TunnelPlugin", "WorkerError"]
