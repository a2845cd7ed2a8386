"""The workflows of the design, in a real kernel against the rig's real sshd.

- read_sql from a PostgreSQL only the server reaches, through ``%tunnel -L``
  and ``Forward.url``;
- a dashboard served by the kernel, shown through ``%tunnel -R`` and fetched
  from the server's side at the URL the tunnel's display offers.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from urllib.parse import quote

import pytest

from tests.rig import postgres as pg
from tests.rig.data import expected_sha256

from .conftest import Kernel

pytestmark = [pytest.mark.integration, pytest.mark.notebook]

SIZE = 1_000_000


def test_read_sql_through_a_tunnel_opened_by_the_magic(
    kernel: Kernel, sshd, postgres: pg.Postgres
) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    line = sshd.line("-L", f"0:127.0.0.1:{postgres.port}")
    opened = kernel.run(f"t = %tunnel {line}")
    assert opened.ok, opened.text
    secret = quote(pg.PASSWORD, safe="")
    template = f"postgresql+psycopg://analyst:{secret}@dbhost:5432/sales"
    ran = kernel.run(
        "import pandas, sqlalchemy\n"
        f"engine = sqlalchemy.create_engine(t.forwards[0].url({template!r}))\n"
        "frame = pandas.read_sql('select * from orders order by id', engine,"
        " coerce_float=False)\n"
        "engine.dispose()\n"
        "print(frame.to_csv(index=False), end='')\n",
        timeout=120,
    )
    assert ran.ok, ran.text
    assert ran.text == (
        "id,item,amount\n"
        "1,bolts,12.50\n"
        "2,nuts and washers,3.75\n"
        '3,"grüße, ünïcode",1000.00\n'
    )


DASHBOARD = """
import http.server, threading
from tests.rig.data import chunks

class Dashboard(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str({size}))
        self.end_headers()
        for piece in chunks({size}):
            self.wfile.write(piece)

    def log_message(self, *args):
        pass

httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dashboard)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
port = httpd.server_address[1]
"""


def test_a_dashboard_in_the_kernel_is_fetched_from_the_server_side(
    kernel: Kernel, sshd, rig
) -> None:
    assert kernel.run("%load_ext nbtunnel").ok
    started = kernel.run(DASHBOARD.format(size=SIZE))
    assert started.ok, started.text
    port = kernel.value("port")
    # Wide only in the rig's namespace: here it would leave loopback.
    bind = "0.0.0.0:0" if rig.netns is not None else "0"
    opened = kernel.run(f"t = %tunnel {sshd.line('-R', f'{bind}:127.0.0.1:{port}')}")
    assert opened.ok, opened.text
    shown = kernel.run("t")
    assert shown.ok, shown.text
    links = re.findall(r"<a href='([^']+)'", shown.html())
    remote_port = kernel.value("t.forwards[0].listen_port")
    assert links == [f"http://{sshd.host}:{remote_port}/"]
    assert f"share {links[0]}" in shown.text
    # Fetched where sshd runs, at exactly the URL the display offers.
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "30", "-o", "-", links[0]]
    got = subprocess.run(sshd.ns_argv(argv), capture_output=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(got.stdout).hexdigest() == expected_sha256(SIZE)
    assert kernel.value("t.forwards[0].stats.connections_total") == 1
    assert kernel.run("%tunnel stop all").ok
    assert kernel.run("httpd.shutdown(); httpd.server_close()").ok
