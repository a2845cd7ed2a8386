"""What this paramiko and this cryptography let the gate do, found out at import.

Every speed-up and fix in this folder leans on names paramiko keeps private
(and, for the fast path, on ``AESGCM.encrypt_into``, which cryptography has
only from 47.0).  Any release may rename one, so each feature is probed here
once, on paramiko's real classes and on throwaway instances (attributes set
in ``__init__`` exist only there), and the fast path is also run once over a
loopback connection both ways: what is missing turns that one feature off
instead of failing a connection, a re-key or a relay later.

- Speed-ups (``fastpath``, ``splice``) fall back to plain paramiko; the
  environment variable ``NBTUNNEL_FASTPATH=0`` turns them off as well (and
  ``-o FastPath=no`` does for one connection, through ``Transport``).
- Fixes and extensions fall back to paramiko's own behaviour where it has
  one (``rekey``: its re-key, ``keepalive``: its single reply slot and
  keepalives nobody answers, ``route_forwarded``: ``request_port_forward``,
  ``agent``: ``paramiko.Agent`` on ``SSH_AUTH_SOCK``, ``ordered``: the
  relay's own EOF before its CLOSE); ``streamlocal`` has none, and
  unix-socket forwards are refused with :func:`why_not`'s line.

:func:`available` says whether a feature is on, :func:`why_not` why not, in
one line naming the version that lacks what it needs.
"""

from __future__ import annotations

import array
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import cryptography
import paramiko
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from paramiko.agent import AgentSSH
from paramiko.buffered_pipe import BufferedPipe
from paramiko.common import (
    MSG_CHANNEL_OPEN,
    MSG_CHANNEL_OPEN_FAILURE,
    MSG_CHANNEL_OPEN_SUCCESS,
    MSG_REQUEST_FAILURE,
    MSG_REQUEST_SUCCESS,
)
from paramiko.packet import Packetizer as _Packetizer

from . import fastpath, gcm

FEATURES = (
    "fastpath",
    "splice",
    "rekey",
    "streamlocal",
    "keepalive",
    "route_forwarded",
    "agent",
    "ordered",
)
# Turned off together by the switch: they change how bytes travel, not what.
SPEEDUPS = ("fastpath", "splice")
SWITCH = "NBTUNNEL_FASTPATH"
_OFF = ("0", "no", "off", "false")

PARAMIKO = f"paramiko {getattr(paramiko, '__version__', '(unknown version)')}"
CRYPTOGRAPHY = f"cryptography {getattr(cryptography, '__version__', '(unknown)')}"

# How each feature is named in its line.
_WHAT = {
    "fastpath": "the fast path (batched AES-GCM packets)",
    "splice": "the relay's splice (channel data straight to the socket)",
    "rekey": "the re-key deadlock fix",
    "streamlocal": "forwarding unix sockets",
    "keepalive": "matching replies to ServerAliveInterval's keepalives",
    "route_forwarded": "routing -R connections to their forwards",
    "agent": "an ssh-agent on nbtunnel's own socket",
    "ordered": "sending a channel's data and EOF before its CLOSE",
}
# What each falls back to, said after why.
_INSTEAD = {
    "fastpath": "paramiko's own packets carry the data",
    "splice": "the relay reads and writes the channel as paramiko's API does",
    "rekey": "paramiko re-keys on its own",
    "streamlocal": "use a TCP port instead",
    "keepalive": "TCP keepalive notices a dead server instead",
    "route_forwarded": "paramiko's request_port_forward routes them",
    "agent": "paramiko's Agent on SSH_AUTH_SOCK is used",
    "ordered": (
        "the relay still sends its own EOF before its CLOSE, but paramiko's "
        "data or EOF may follow a CLOSE and make the server disconnect"
    ),
}


class _Missing(Exception):
    """What a feature needs and this paramiko (or cryptography) lacks."""

    def __init__(self, name: str, whose: str = PARAMIKO) -> None:
        super().__init__(name)
        self.name = name
        self.whose = whose


def _need(obj: object, where: str, *names: str) -> None:
    for name in names:
        if not hasattr(obj, name):
            raise _Missing(f"{where}.{name}")


def _need_method(cls: type, *names: str) -> None:
    for name in names:
        if not callable(getattr(cls, name, None)):
            raise _Missing(f"{cls.__name__}.{name}")


def _dispatches(t: paramiko.Transport, handlers: dict[int, str]) -> None:
    """paramiko must call these handlers by name, so that overriding one
    (transport.py does) is what runs."""
    table = getattr(t, "_handler_table", None)
    for ptype, name in handlers.items():
        _need_method(paramiko.Transport, name)
        # Without the table by that name, its entries cannot be looked at;
        # the names being there is then all there is to check.
        if isinstance(table, dict):
            handler = table.get(ptype)
            if getattr(handler, "__name__", None) != name:
                raise _Missing(f"Transport._handler_table entry calling {name}")


# -- the probes, one per feature -----------------------------------------------


def _fastpath(t: paramiko.Transport) -> None:
    if not callable(getattr(AESGCM, "encrypt_into", None)):
        raise _Missing("AESGCM.encrypt_into (from cryptography 47.0)", CRYPTOGRAPHY)
    _need(t.packetizer, "Packetizer", *gcm._STATE)
    _need_method(
        _Packetizer,
        "_trigger_rekey",
        "_check_keepalive",
        "read_message",
        "send_message",
        "complete_handshake",
        "set_inbound_cipher",
        "set_outbound_cipher",
        "need_rekey",
    )
    _need(
        _Packetizer,
        "Packetizer",
        "REKEY_BYTES",
        "REKEY_PACKETS",
        "REKEY_BYTES_OVERFLOW_MAX",
        "REKEY_PACKETS_OVERFLOW_MAX",
    )
    _need(t, "Transport", "_expected_packet", "initial_kex_done", "_channels")
    _need(paramiko.Transport, "Transport", "_channel_handler_table")
    _need_method(paramiko.Channel, "_feed")
    try:
        fastpath.round_trip()
    except fastpath.Unusable as exc:
        raise _Missing(str(exc)) from None


def _splice(t: paramiko.Transport) -> None:
    pipe: Any = BufferedPipe()
    _need(pipe, "BufferedPipe", "_lock", "_cv", "_event", "_buffer", "_closed")
    if not (
        isinstance(pipe._cv, threading.Condition)
        and isinstance(pipe._buffer, array.array)
    ):
        raise _Missing("BufferedPipe's _cv and _buffer as they were")
    chan = paramiko.Channel(0)
    _need(
        chan,
        "Channel",
        "in_buffer",
        "in_window_size",
        "in_window_threshold",
        "out_window_size",
        "out_max_packet_size",
        "remote_chanid",
        "lock",
        "closed",
    )
    _need_method(paramiko.Channel, "_check_add_window", "_wait_for_send_window")
    _need(t, "Transport", "clear_to_send", "clear_to_send_lock")
    _need_method(paramiko.Transport, "_send_user_message")


def _rekey(t: paramiko.Transport) -> None:
    _need(t, "Transport", "clear_to_send")
    _need_method(paramiko.Transport, "_send_user_message")


def _streamlocal(t: paramiko.Transport) -> None:
    _need(
        t,
        "Transport",
        "_channels",
        "channel_events",
        "channels_seen",
        "lock",
        "default_window_size",
        "default_max_packet_size",
    )
    for name in ("put", "get", "delete"):
        _need(t._channels, "Transport._channels", name)  # type: ignore[attr-defined]
    _need_method(paramiko.Transport, "_next_channel", "_send_user_message")
    _need_method(paramiko.Channel, "_set_transport", "_set_window")
    _need(paramiko.Message(b""), "Message", "packet")
    _dispatches(
        t,
        {
            MSG_CHANNEL_OPEN: "_parse_channel_open",
            MSG_CHANNEL_OPEN_SUCCESS: "_parse_channel_open_success",
            MSG_CHANNEL_OPEN_FAILURE: "_parse_channel_open_failure",
        },
    )


def _keepalive(t: paramiko.Transport) -> None:
    _need_method(paramiko.Transport, "_send_user_message")
    _dispatches(
        t,
        {
            MSG_REQUEST_SUCCESS: "_parse_request_success",
            MSG_REQUEST_FAILURE: "_parse_request_failure",
        },
    )


def _route_forwarded(t: paramiko.Transport) -> None:
    _need(t, "Transport", "_tcp_handler")


def _agent(t: paramiko.Transport) -> None:
    _need_method(AgentSSH, "_connect", "_close")
    AgentSSH()


def _ordered(t: paramiko.Transport) -> None:
    chan: Any = paramiko.Channel(0)
    _need(chan, "Channel", "lock", "closed", "eof_sent", "remote_chanid")
    _need(chan, "Channel", "out_window_size", "active")
    _need_method(paramiko.Channel, "_send_eof", "_wait_for_send_window")
    _need(t, "Transport", "clear_to_send", "clear_to_send_lock", "packetizer")
    _need_method(paramiko.Transport, "is_active")
    _need_method(_Packetizer, "send_message")
    # What ordered.py counts on: close() marks the channel closed before it
    # sends its EOF and CLOSE, and sends them as _send_user_message().
    closed_when_sent: list[bool] = []

    class Sender:
        def _send_user_message(self, m: paramiko.Message) -> None:
            closed_when_sent.append(bool(chan.closed))

    chan.transport, chan.active = Sender(), True
    chan.close()
    if closed_when_sent != [True, True]:
        raise _Missing("Channel.close marking the channel closed before sending")


_PROBES: dict[str, Callable[[paramiko.Transport], None]] = {
    "fastpath": _fastpath,
    "splice": _splice,
    "rekey": _rekey,
    "streamlocal": _streamlocal,
    "keepalive": _keepalive,
    "route_forwarded": _route_forwarded,
    "agent": _agent,
    "ordered": _ordered,
}


# -- what was found ------------------------------------------------------------


def _run() -> dict[str, str]:
    """Each feature's reason to be off (absent where it is on)."""
    found: dict[str, str] = {}
    a, b = socket.socketpair()
    try:
        # Instance attributes exist only on an instance: a Transport that
        # never starts, on a socket pair nobody speaks on.
        t = paramiko.Transport(a)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the feature is off
        a.close()
        b.close()
        why = f"{PARAMIKO}'s Transport could not be built here ({exc})"
        return dict.fromkeys(FEATURES, why)
    try:
        for feature, probe in _PROBES.items():
            try:
                probe(t)
            except _Missing as missing:
                found[feature] = (
                    f"{_WHAT[feature]} needs {missing.name}, which {missing.whose} "
                    f"does not have; {_INSTEAD[feature]}"
                )
            except Exception as exc:  # noqa: BLE001 - a probe must never fail the import
                found[feature] = (
                    f"{_WHAT[feature]} is off: probing {PARAMIKO} failed "
                    f"({type(exc).__name__}: {exc}); {_INSTEAD[feature]}"
                )
    finally:
        a.close()
        b.close()
    return found


_FOUND = _run()


def _switched_off() -> bool:
    return os.environ.get(SWITCH, "").strip().lower() in _OFF


def _check(feature: str) -> None:
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; one of {', '.join(FEATURES)}")


def lacking(feature: str) -> str | None:
    """What this paramiko or cryptography lacks for ``feature``, in one line
    (the switch aside); None if nothing."""
    _check(feature)
    return _FOUND.get(feature)


def supported(feature: str) -> bool:
    """Whether this paramiko and cryptography have what ``feature`` needs
    (the switch aside)."""
    return lacking(feature) is None


def available(feature: str) -> bool:
    """Whether ``feature`` is on: supported, and not switched off."""
    return why_not(feature) is None


def why_not(feature: str) -> str | None:
    """Why ``feature`` is off, in one line; None if it is on."""
    _check(feature)
    if feature in SPEEDUPS and _switched_off():
        return f"{SWITCH}={os.environ[SWITCH]} turns {_WHAT[feature]} off"
    return _FOUND.get(feature)


def report() -> dict[str, str | None]:
    """Every feature and why it is off (None: on), for diagnostics."""
    return {feature: why_not(feature) for feature in FEATURES}
