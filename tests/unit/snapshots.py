"""Forward snapshots for the view tests (display, urls), as the engine would send them."""

from __future__ import annotations

from nbtunnel.status import ForwardSnapshot

_KINDS = {"-L": "local", "-R": "remote", "-D": "dynamic"}


def forward_snapshot(spec: str, state: str = "up", **where: object) -> ForwardSnapshot:
    """A snapshot of the forward ``spec`` (``"-L 0:db:5432"``): its kind from
    the flag, every address unset unless ``where`` gives it."""
    fields: dict[str, object] = dict(
        listen_host=None,
        listen_port=None,
        listen_path=None,
        target_host=None,
        target_port=None,
        target_path=None,
    )
    fields.update(where)
    kind = _KINDS[spec.split()[0]]
    return ForwardSnapshot(index=0, spec=spec, kind=kind, state=state, **fields)  # type: ignore[arg-type]
