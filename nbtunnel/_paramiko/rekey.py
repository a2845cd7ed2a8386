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

:func:`install` holds the transport thread's messages back instead, and
that thread sends them, in order, once the server's NEWKEYS has ended the
exchange.  Other threads keep paramiko's behaviour (they wait).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import paramiko
from paramiko.common import MSG_NEWKEYS


def install(transport: paramiko.Transport) -> None:
    """Make ``transport``'s own thread defer its messages during a key exchange."""
    send: Callable[[paramiko.Message], None] = transport._send_user_message  # type: ignore[attr-defined]
    table = transport._handler_table  # type: ignore[attr-defined]
    newkeys: Callable[[paramiko.Message], None] = table[MSG_NEWKEYS]
    held: list[paramiko.Message] = []

    def send_user_message(m: paramiko.Message) -> None:
        # Only the transport thread appends or flushes: no lock needed.
        if threading.current_thread() is transport and (
            held or not transport.clear_to_send.is_set()
        ):
            held.append(m)
            return
        send(m)

    def parse_newkeys(m: paramiko.Message) -> None:
        newkeys(m)
        while held and transport.clear_to_send.is_set():
            send(held.pop(0))

    transport._send_user_message = send_user_message  # type: ignore[attr-defined]
    table[MSG_NEWKEYS] = parse_newkeys
