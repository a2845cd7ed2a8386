"""The engine protocol: framing, errors across the pipe, snapshots as plain data."""

from __future__ import annotations

import pytest
from nbtunnel import errors
from nbtunnel.engine.core import Engine
from nbtunnel.engine.protocol import decode, encode, error_from_dict, error_to_dict
from nbtunnel.status import ForwardSnapshot, ForwardStats, TunnelSnapshot


def test_encode_decode_round_trip() -> None:
    message = {"id": 3, "op": "open", "forwards": [["-L", "0:db:5432"]]}
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == message


def test_decode_rejects_non_objects() -> None:
    with pytest.raises(ValueError, match="not a message"):
        decode(b"[1, 2]\n")


@pytest.mark.parametrize("cls", list(errors.ERROR_TYPES.values()))
def test_every_error_type_crosses_the_pipe(cls: type[errors.TunnelError]) -> None:
    exc = cls("something went wrong")
    back = error_from_dict(decode(encode({"e": error_to_dict(exc)}))["e"])
    assert type(back) is cls
    assert str(back) == "something went wrong"


def test_a_bug_in_the_engine_arrives_as_a_tunnel_error_with_its_traceback() -> None:
    try:
        raise KeyError("oops")
    except KeyError as exc:
        data = error_to_dict(exc)
    back = error_from_dict(data)
    assert type(back) is errors.TunnelError
    assert "internal error" in str(back)
    assert "KeyError" in back.engine_traceback  # type: ignore[attr-defined]


def test_snapshot_round_trip() -> None:
    snap = TunnelSnapshot(
        id=1,
        destination="u@h",
        state="up",
        error=None,
        forwards=(
            ForwardSnapshot(
                index=0,
                spec="-L 0:db:5432",
                kind="local",
                listen_host="127.0.0.1",
                listen_port=4000,
                listen_path=None,
                target_host="db",
                target_port=5432,
                target_path=None,
                state="up",
                stats=ForwardStats(1, 2, 3, 4, 0, None),
            ),
        ),
        started_at=5.0,
    )
    assert TunnelSnapshot.from_dict(decode(encode(snap.to_dict()))) == snap
    assert snap.stats.connections_total == 4


def test_engine_answers_unknown_requests_with_an_error() -> None:
    events: list[dict] = []
    engine = Engine(events.append)
    reply = engine.handle({"id": 7, "op": "frobnicate"})
    assert reply["id"] == 7 and reply["ok"] is False
    assert "frobnicate" in reply["error"]["message"]
    assert engine.handle({"id": 8, "op": "snapshot"}) == {
        "id": 8,
        "ok": True,
        "result": [],
    }
    engine.stop_all(final=True)


def test_stopping_a_forward_of_an_unknown_tunnel_is_an_error() -> None:
    engine = Engine(lambda message: None)
    reply = engine.handle({"id": 9, "op": "stop_forward", "tunnel": 42, "forward": 0})
    assert reply["ok"] is False
    assert "no tunnel 42" in reply["error"]["message"]
    engine.stop_all(final=True)


def test_a_question_waits_for_its_answer_and_closing_releases_it() -> None:
    import threading

    from nbtunnel.engine.core import Prompts

    asked: list[dict] = []
    prompts = Prompts(lambda kind, **data: asked.append({"event": kind, **data}))
    ask = prompts.asker(request_id=7)
    got: list[str | None] = []
    asking = threading.Thread(target=lambda: got.append(ask("Passphrase: ", True)))
    asking.start()
    while not asked:
        threading.Event().wait(0.01)
    assert asked[0] == {
        "event": "prompt",
        "prompt": 1,
        "request": 7,
        "text": "Passphrase: ",
        "secret": True,
    }
    prompts.answer(99, "for nobody")  # an unknown question: ignored
    prompts.answer(1, "s3cret")
    asking.join(5)
    assert got == ["s3cret"]
    # Closing: a question still open counts as unanswered, new ones are not asked.
    second = threading.Thread(target=lambda: got.append(ask("Again: ", False)))
    second.start()
    while len(asked) < 2:
        threading.Event().wait(0.01)
    prompts.close()
    second.join(5)
    assert got == ["s3cret", None]
    assert ask("Late: ", False) is None and len(asked) == 2
