"""A real PostgreSQL that only the SSH server reaches, read through -L with url().

The cluster (tests/rig/postgres.py) runs in the rig's namespace in netns
mode: its 127.0.0.1 and its unix socket are the server's, so pandas, SQLAlchemy
and psql here get the rows only through the forward.  Over TCP it asks for a
password, so a URL that lost or mangled the template's password cannot log in.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pandas
import pytest
import sqlalchemy
from nbtunnel import ForwardError, Manager, UrlError

from tests.rig import postgres as pg

pytestmark = pytest.mark.integration

QUERY = "select * from orders order by id"
ROWS = [(i, item, Decimal(amount)) for i, item, amount in pg.ORDERS]
SECRET = quote(pg.PASSWORD, safe="")


def _read_sql(url: str) -> list[tuple[object, ...]]:
    engine = sqlalchemy.create_engine(url)
    try:
        # coerce_float=False keeps numeric as Decimal: exact, not 12.5.
        frame = pandas.read_sql(QUERY, engine, coerce_float=False)
    finally:
        engine.dispose()
    assert list(frame.columns) == ["id", "item", "amount"]
    return list(frame.itertuples(index=False, name=None))


def _psql(postgres: pg.Postgres, url: str) -> subprocess.CompletedProcess[str]:
    # -w: never prompt; a missing password must fail, not wait for a person.
    argv = [str(postgres.bindir / "psql"), "-X", "-w", "-A", "-t", "-F", ","]
    return subprocess.run(
        [*argv, "-d", url, "-c", QUERY],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Short, unlike pytest's tmp_path: a unix socket path has ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="nbt-pg-") as d:
        yield Path(d)


def test_pandas_sqlalchemy_and_psql_read_through_a_tcp_forward(
    manager: Manager, sshd, postgres: pg.Postgres
) -> None:
    with manager.open(sshd.line("-L", f"0:127.0.0.1:{postgres.port}")) as t:
        fwd = t.forwards[0]
        port = fwd.listen_port
        template = f"postgresql+psycopg://analyst:{SECRET}@dbhost:5432/sales"
        url = fwd.url(template + "?application_name=nbt#f")
        # Only host and port changed; the encoded password is byte for byte.
        assert url == (
            f"postgresql+psycopg://analyst:{SECRET}@127.0.0.1:{port}/sales"
            "?application_name=nbt#f"
        )
        assert _read_sql(fwd.url(template)) == ROWS

        done = _psql(postgres, fwd.url(f"postgresql://analyst:{SECRET}@db/sales"))
        assert done.returncode == 0, done.stderr
        assert done.stdout == pg.ORDERS_CSV

        # The server checks the password: the one in the URL is what got in.
        refused = _psql(postgres, fwd.url("postgresql://analyst@db/sales"))
        assert refused.returncode != 0
        assert "password" in refused.stderr
        assert fwd.stats.connections_total >= 3


def test_the_servers_unix_socket_through_a_tcp_port(
    manager: Manager, sshd, postgres: pg.Postgres
) -> None:
    # -L 0:/path/.s.PGSQL.5432: the server's socket, a TCP port here.
    with manager.open(sshd.line("-L", f"0:{postgres.socket}")) as t:
        fwd = t.forwards[0]
        url = fwd.url("postgresql://analyst@dbhost/sales")
        assert url == f"postgresql://analyst@127.0.0.1:{fwd.listen_port}/sales"
        # On the socket the server trusts local users: no password needed.
        assert _read_sql(fwd.url("postgresql+psycopg://analyst@dbhost/sales")) == ROWS
        done = _psql(postgres, url)
        assert done.returncode == 0, done.stderr
        assert done.stdout == pg.ORDERS_CSV


def test_a_local_unix_socket_named_for_libpq_gives_host_dir(
    manager: Manager, sshd, postgres: pg.Postgres, socket_dir: Path
) -> None:
    here = socket_dir / ".s.PGSQL.6543"
    with manager.open(sshd.line("-L", f"{here}:{postgres.socket}")) as t:
        fwd = t.forwards[0]
        url = fwd.url("postgresql://analyst@dbhost:5432/sales?connect_timeout=9")
        assert url == (
            f"postgresql://analyst@/sales?connect_timeout=9&host={socket_dir}&port=6543"
        )
        done = _psql(postgres, url)
        assert done.returncode == 0, done.stderr
        assert done.stdout == pg.ORDERS_CSV
        driver = fwd.url("postgresql+psycopg://analyst@dbhost/sales")
        assert _read_sql(driver) == ROWS


def test_a_local_unix_socket_named_otherwise_is_refused(
    manager: Manager, sshd, postgres: pg.Postgres, socket_dir: Path
) -> None:
    here = socket_dir / "db.sock"
    with manager.open(sshd.line("-L", f"{here}:{postgres.socket}")) as t:
        with pytest.raises(UrlError, match=r"DIRECTORY/\.s\.PGSQL\.PORT") as caught:
            t.forwards[0].url("postgresql://analyst@dbhost/sales")
        assert str(here) in str(caught.value)


def test_url_refuses_a_remote_a_dynamic_and_a_stopped_forward(
    manager: Manager, sshd, postgres: pg.Postgres, here
) -> None:
    line = sshd.line(
        "-L",
        f"0:127.0.0.1:{postgres.port}",
        "-R",
        f"0:127.0.0.1:{here.http}",
        "-D",
        "0",
    )
    with manager.open(line) as t:
        local, remote, dynamic = t.forwards
        with pytest.raises(UrlError, match="listens on the server") as caught:
            remote.url("http://dash:8050/")
        # Where people on the server's side would go instead, from the display.
        assert f"{sshd.host}:{remote.listen_port}/" in str(caught.value)
        with pytest.raises(ValueError, match="SOCKS proxy"):
            dynamic.url("http://intranet/")
        with pytest.raises(ForwardError, match="not a -D SOCKS proxy"):
            local.proxies  # noqa: B018
        local.stop()
        with pytest.raises(UrlError, match="is stopped"):
            local.url("postgresql://analyst@db/sales")
