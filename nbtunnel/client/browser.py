"""Where the user's browser reaches a port of this machine.

``http://127.0.0.1:PORT/`` opens only in a browser on the kernel's machine.
On a JupyterHub, a university hub or Binder the browser is on the user's
laptop, and the Jupyter server there usually has jupyter-server-proxy,
which serves any port of the kernel's machine at ``<base_url>proxy/PORT/``
behind Jupyter's own login (``proxy/absolute/PORT/`` for apps that need
their full path).  :func:`route` finds that base URL, once per process, and
never guesses: when it cannot find a server with the proxy, the plain URL
is used and :attr:`Route.why` says why.

- On a hub, ``JUPYTERHUB_SERVICE_PREFIX`` is the server's base URL.
- Otherwise, the running Jupyter server that has this kernel: the servers
  in Jupyter's runtime directory (``jpserver-*.json``, what ``jupyter
  server list`` reads), each asked for its kernels, with its own token, for
  the id in this kernel's connection file.

Either way the server must answer jupyter-server-proxy's
``server-proxy/servers-info``.  Only servers whose process is alive and
this user's are asked (a stale file's port may be someone else's now),
straight (no HTTP proxy, no redirect: the token goes nowhere else), with
their own token (on a hub, the hub's API token the server accepts).  All
of it within :data:`DEADLINE`; an answer cut short by it is not kept, so
the next call asks again.  Colab and others whose proxies need their own
calls are not covered.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..platform import processes

# Every question to the servers on this machine, together: they answer at
# once or not at all, and the first display of a table waits for this.
DEADLINE = 3.0


@dataclass(frozen=True)
class Route:
    """Where the browser reaches this machine's ports: through ``prefix``
    (the Jupyter server's base URL, ending in "/"), or directly (None)."""

    prefix: str | None
    why: str

    def url(
        self, port: int, path: str = "/", *, absolute: bool = False, host: str = ""
    ) -> str:
        """The URL of ``path`` on ``port`` of this machine, for the browser
        (``host``: where a browser here connects, 127.0.0.1 if not given)."""
        if not path.startswith("/"):
            path = "/" + path
        if self.prefix is None:
            return f"http://{host or '127.0.0.1'}:{port}{path}"
        kind = "absolute/" if absolute else ""
        return f"{self.prefix}proxy/{kind}{port}{path}"


# No Jupyter server in between: the browser is on this machine.
DIRECT = Route(None, "the browser connects to this machine")

_lock = threading.Lock()
_found: list[Route] = []


def route() -> Route:
    """This process's route, found on first use (see the module)."""
    with _lock:
        if _found:
            return _found[0]
        asking = _Asking(time.monotonic() + DEADLINE)
        found = _find(asking)
        if not asking.cut_short:
            _found.append(found)
        return found


class _Asking:
    """The questions of one search, within one deadline, straight to the
    servers: no HTTP proxy and no redirect may take a token elsewhere."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cut_short = False
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), _NoRedirect()
        )

    def ask(self, server: dict[str, Any], path: str) -> Any:
        """GET ``path`` of ``server`` with its token; its JSON, or None."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.cut_short = True
            return None
        url = server["url"].rstrip("/") + "/" + path
        request = urllib.request.Request(
            url, headers={"Authorization": f"token {server['_token']}"}
        )
        try:
            with self._opener.open(request, timeout=left) as answer:
                return json.loads(answer.read())
        except Exception as exc:  # noqa: BLE001 - whatever answers there, not Jupyter
            # A timeout, raised as itself or (connecting) inside a URLError.
            if isinstance(exc, TimeoutError) or isinstance(
                getattr(exc, "reason", None), TimeoutError
            ):
                self.cut_short = True
            return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _find(asking: _Asking) -> Route:
    kernel = _kernel_id()
    hub = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if kernel is None and hub is None:
        return Route(None, "not running in a Jupyter kernel")
    servers = _servers()
    if hub:
        prefix = hub if hub.endswith("/") else hub + "/"
        for server in servers:
            if server.get("base_url") != prefix:
                continue
            server["_token"] = server.get("token") or os.environ.get(
                "JUPYTERHUB_API_TOKEN", ""
            )
            if _has_proxy(asking, server):
                return Route(prefix, "the hub's server, through jupyter-server-proxy")
        return Route(
            None,
            f"on a hub, but no server of this user at {prefix} answers as "
            "jupyter-server-proxy",
        )
    for server in servers:
        server["_token"] = server.get("token", "")
        if kernel in _kernels(asking, server):
            if _has_proxy(asking, server):
                base = str(server.get("base_url") or "/")
                return Route(base, "this kernel's server, through jupyter-server-proxy")
            return Route(
                None,
                "this kernel's Jupyter server has no jupyter-server-proxy "
                "(pip install jupyter-server-proxy there, then restart it)",
            )
    return Route(None, "no running Jupyter server says it has this kernel")


def _kernel_id() -> str | None:
    """The id of the kernel this process is, from its connection file name."""
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    app_class: Any = getattr(kernelapp, "IPKernelApp", None)
    if app_class is None or not app_class.initialized():
        return None
    name = os.path.basename(str(app_class.instance().connection_file or ""))
    if not (name.startswith("kernel-") and name.endswith(".json")):
        return None
    return name[len("kernel-") : -len(".json")]


def _servers() -> list[dict[str, Any]]:
    """The running Jupyter servers Jupyter's runtime directory lists."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return []
    found = []
    for path in sorted(
        glob.glob(os.path.join(jupyter_runtime_dir(), "jpserver-*.json"))
    ):
        try:
            with open(path, encoding="utf-8") as file:
                info = json.load(file)
        except (OSError, ValueError):
            continue
        if not (isinstance(info, dict) and isinstance(info.get("url"), str)):
            continue
        # A server that ended leaves its file behind: its port may be
        # another user's now, and a token must not go there.
        pid = info.get("pid")
        if isinstance(pid, int) and processes.alive_and_mine(pid):
            found.append(info)
    return found


def _kernels(asking: _Asking, server: dict[str, Any]) -> set[str]:
    listed = asking.ask(server, "api/kernels")
    if not isinstance(listed, list):
        return set()
    return {str(k.get("id")) for k in listed if isinstance(k, dict)}


def _has_proxy(asking: _Asking, server: dict[str, Any]) -> bool:
    return asking.ask(server, "server-proxy/servers-info") is not None
