"""Global requests whose replies find their requests, and the router of -R channels.

paramiko keeps one slot for the reply to a global request, so a keepalive's
reply would be taken for a ``tcpip-forward``'s; and one private hook for
every channel the server opens for a remote forward, which its public
``request_port_forward`` replaces per request.  :class:`Requests` matches
replies to requests in order (replies come in the order requests went out,
one per request that wanted one) and sets the hook once.  Where ``probe``
found paramiko's names for these gone, it falls back to paramiko's own
single slot and ``request_port_forward``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import paramiko
from paramiko.common import cMSG_GLOBAL_REQUEST

from ..errors import ForwardError
from . import probe

FORWARD_REQUEST = "streamlocal-forward@openssh.com"
CANCEL_REQUEST = "cancel-streamlocal-forward@openssh.com"

# What ssh sends for ServerAliveInterval: any server answers it (with a
# failure, as it knows no such request), which is all a probe asks.
KEEPALIVE = "keepalive@openssh.com"

# handler(channel, origin, server address) for each channel of a -R.
Handler = Callable[[paramiko.Channel, tuple[str, int], tuple[str, int]], None]


class _Reply:
    """The answer to one global request, for the thread waiting on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.message: paramiko.Message | None = None


class Requests(paramiko.Transport):
    """paramiko's Transport with global requests matched to their replies."""

    def __init__(self, sock: socket.socket | paramiko.Channel) -> None:
        super().__init__(sock)
        # None stands for a probe, whose reply nobody waits for.  The order
        # lock covers the send, the queue lock never does: the transport
        # thread takes it to deliver a reply, and must never wait on a send.
        self._request_order = threading.Lock()
        self._replies_lock = threading.Lock()
        self._replies: deque[_Reply | None] = deque()
        # The handler of forwarded channels, for paramiko's own routing
        # where its private hook is gone (see forward_tcp()).
        self._route: Handler | None = None
        # How long a global request made by paramiko's own
        # request_port_forward() waits for its reply.
        self._request_timeout: float | None = None

    def route_forwarded(
        self,
        handler: Callable[[paramiko.Channel, tuple[str, int], tuple[str, int]], None],
    ) -> None:
        """Hand every channel the server opens for a remote forward to
        ``handler(channel, origin, server)``, whatever address it came to."""
        # paramiko's single (private) hook for every forwarded-tcpip (and,
        # through _parse_channel_open below, forwarded-streamlocal) channel;
        # set directly because request_port_forward() would replace it per
        # request.  Without it, forward_tcp() hands it over as each listener
        # is set up.
        self._route = handler
        if probe.available("route_forwarded"):
            self._tcp_handler = handler

    def forward_tcp(self, address: str, port: int, timeout: float | None) -> int | None:
        """Ask the server to listen on ``address:port`` (``tcpip-forward``):
        the port it bound, or None if it refused.  Raises TimeoutError if it
        did not answer within ``timeout`` seconds."""
        if probe.available("route_forwarded") or self._route is None:
            reply = self.global_request("tcpip-forward", (address, port), True, timeout)
            if reply is None:
                return None
            return reply.get_int() if port == 0 else port
        # paramiko's own way: request_port_forward() sets its hook itself
        # (through global_request() below, which keeps the timeout).
        self._request_timeout = timeout
        try:
            bound: int = self.request_port_forward(address, port, self._route)
        except paramiko.SSHException:
            return None
        finally:
            self._request_timeout = None
        return bound

    def forward_streamlocal(self, path: str, timeout: float | None) -> bool:
        """Ask the server to listen on the unix socket ``path``
        (``streamlocal-forward``); whether it agreed.  Raises ForwardError
        where this paramiko cannot route what arrives there."""
        for feature in ("streamlocal", "route_forwarded"):
            why = probe.why_not(feature)
            if why is not None:
                raise ForwardError(why)
        reply = self.global_request(FORWARD_REQUEST, (path,), True, timeout)
        return reply is not None

    # -- global requests --------------------------------------------------

    def global_request(
        self,
        kind: str,
        data: Iterable[Any] | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> paramiko.Message | None:
        """paramiko's global_request, with replies matched to requests in order.

        Returns the reply of a request the server granted, None if it refused
        it or the connection ended; raises TimeoutError if no reply came
        within ``timeout`` seconds.
        """
        m = paramiko.Message()
        m.add_byte(cMSG_GLOBAL_REQUEST)
        m.add_string(kind)
        m.add_boolean(wait)
        if data is not None:
            m.add(*data)
        self.logger.debug(f'Sending global request "{kind}"')
        if not wait:
            self._send_user_message(m)  # type: ignore[attr-defined]
            return None
        if timeout is None:
            timeout = self._request_timeout
        reply = _Reply()
        if probe.available("keepalive"):
            self._send_request(m, reply)
            return reply.message if self._wait(kind, reply, timeout) else None
        # paramiko's own single slot (completion_event, global_response),
        # which cannot tell two replies apart: one request at a time.
        with self._request_order:
            self.completion_event = reply.done
            self._send_user_message(m)  # type: ignore[attr-defined]
            answered = self._wait(kind, reply, timeout)
            return self.global_response if answered else None

    def _wait(self, kind: str, reply: _Reply, timeout: float | None) -> bool:
        """Wait for ``reply``: whether it came (False: the connection ended)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not reply.done.wait(0.1):
            if not self.is_active():
                return False
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {kind} within {timeout:g} s")
        return True

    def probe(self) -> None:
        """Send a keepalive that wants a reply, as ssh's ServerAliveInterval does.

        Its answer only shows in :attr:`last_received`.  May block while the
        connection cannot send (a full socket); it ends when the transport
        closes.
        """
        m = paramiko.Message()
        m.add_byte(cMSG_GLOBAL_REQUEST)
        m.add_string(KEEPALIVE)
        answered = probe.available("keepalive")
        # Where replies cannot be matched, one would be taken for another
        # request's: paramiko's kind of keepalive, which wants none.
        m.add_boolean(answered)
        if answered:
            self._send_request(m, None)
        else:
            self._send_user_message(m)  # type: ignore[attr-defined]

    def _send_request(self, m: paramiko.Message, reply: _Reply | None) -> None:
        with self._request_order:
            with self._replies_lock:
                self._replies.append(reply)
            try:
                self._send_user_message(m)  # type: ignore[attr-defined]
            except BaseException:
                # Never sent: the queue must keep matching the wire.
                with self._replies_lock:
                    self._replies.pop()
                raise

    def _answer(self, message: paramiko.Message | None) -> None:
        with self._replies_lock:
            reply = self._replies.popleft() if self._replies else None
        if reply is not None:
            reply.message = message
            reply.done.set()

    def _parse_request_success(self, m: paramiko.Message) -> None:
        if not probe.available("keepalive"):
            super()._parse_request_success(m)  # type: ignore[misc]
            return
        self.logger.debug("Global request successful.")
        self._answer(m)

    def _parse_request_failure(self, m: paramiko.Message) -> None:
        if not probe.available("keepalive"):
            super()._parse_request_failure(m)  # type: ignore[misc]
            return
        self.logger.debug("Global request denied.")
        self._answer(None)
