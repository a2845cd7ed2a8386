"""paramiko's transport thread must not wait for the key exchange it runs itself.

paramiko re-keys every 512 MiB (Packetizer.REKEY_BYTES).  If the server's
CHANNEL_CLOSE, or a channel request that wants a reply, arrives meanwhile
(the server sent it before it saw our KEXINIT), paramiko answers it from
its transport thread through ``_send_user_message()``, which waits until
the key exchange is over, and only that same thread can get it over with.
Everything stops for ``clear_to_send_timeout`` (30 s), then every waiting
send fails with "Key-exchange timed out waiting for key negotiation" and
the connection dies.  Measured: 1000 connections at once through one -L
after 2.5 GiB had passed lost 694 of them this way.

:func:`install` holds the transport thread's messages back instead, and a
short-lived sender thread sends them, in order, through paramiko's own
``_send_user_message()`` once the exchange is over; the transport thread
queues behind it until it is done, so nothing overtakes.  Other threads
keep paramiko's behaviour (they wait).  It needs no private name but
``_send_user_message`` (the public ``clear_to_send`` event says when a key
exchange runs), so a paramiko that renames its handler tables keeps the fix.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

import paramiko

log = logging.getLogger(__name__)


class _Held:
    """The transport thread's messages waiting out a key exchange."""

    def __init__(self, transport: paramiko.Transport) -> None:
        self._transport = transport
        self._send: Callable[[paramiko.Message], None] = transport._send_user_message  # type: ignore[attr-defined]
        self._lock = threading.Lock()
        self._queue: deque[paramiko.Message] = deque()
        self._sending = False

    def send_user_message(self, m: paramiko.Message) -> None:
        transport = self._transport
        if threading.current_thread() is not transport:
            self._send(m)
            return
        with self._lock:
            if not self._sending and transport.clear_to_send.is_set():
                held = False
            else:
                held = True
                self._queue.append(m)
                start = not self._sending
                self._sending = True
        if not held:
            self._send(m)
        elif start:
            self._start_sender()

    def _start_sender(self) -> None:
        try:
            threading.Thread(
                target=self._sender, name="nbtunnel-rekey-held", daemon=True
            ).start()
        except RuntimeError:
            # No thread to spare (a thread limit): paramiko would have
            # waited and failed; end the connection now instead of later.
            log.debug("no thread for messages held over a re-key; closing")
            self._drop()
            self._transport.close()

    def _sender(self) -> None:
        # paramiko's _send_user_message waits for the exchange (from here,
        # not the thread running it), drops its message once the transport
        # is dead, and raises after clear_to_send_timeout: paramiko's own
        # transport thread would then have died, so the connection ends.
        while True:
            with self._lock:
                if not self._queue:
                    self._sending = False
                    return
                m = self._queue.popleft()
            try:
                self._send(m)
            except Exception as exc:  # noqa: BLE001 - any failure ends it alike
                log.debug("message held over a re-key not sent: %s", exc)
                self._drop()
                self._transport.close()
                return

    def _drop(self) -> None:
        with self._lock:
            self._queue.clear()
            self._sending = False


def install(transport: paramiko.Transport) -> None:
    """Make ``transport``'s own thread hold its messages during a key exchange."""
    transport._send_user_message = _Held(transport).send_user_message  # type: ignore[attr-defined]
