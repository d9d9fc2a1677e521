"""meshctl's side of config status: the --timeout flag, the SYNCED column, apply --wait's
verdict per resource (from Galley's status, no server needed)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from meshctl.cli import _duration
from meshctl.config_cmds import _Sync, _sync_line, _synced


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("2m", 120), ("500ms", 0.5), ("7", 7)])
def test_timeout_takes_durations(text: str, seconds: float) -> None:
    assert _duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "0", "nan", "10 parsecs", "1e9h"])
def test_a_bad_timeout_is_refused_with_what_to_write(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="30s"):
        _duration(text)


def status(cond: str, reason: str = "", revision: int = 5, **d: Any) -> dict[str, Any]:
    dist = {"revision": revision, "affected": 2, "acked": [], "nacked": [], "pending": []}
    dist |= {"pilots": {"asked": 1, "answered": 1, "behind": []}} | d
    condition = {"type": "Reconciled", "status": cond, "reason": reason, "message": "m"}
    return {"conditions": [condition], "distribution": dist}


def sync(revision: int, st: dict[str, Any]) -> _Sync:
    return _Sync(
        "VirtualService/default/reviews", revision, st["conditions"][0], st["distribution"]
    )


def test_the_synced_column() -> None:
    assert _synced({"status": status("True", acked=["a", "b"])}) == "2/2"
    nack = {"proxy": "b", "type": "rds", "error": "e"}
    assert _synced({"status": status("False", acked=["a"], nacked=[nack])}) == "1/2 NACK"
    assert _synced({"status": status("False", acked=["a"], pending=["b"])}) == "1/2 PENDING"
    assert _synced({"status": status("Unknown")}) == "?"
    assert _synced({}) == "-"


def test_wait_settles_on_reconciled_or_on_a_nack_with_nothing_pending() -> None:
    assert sync(5, status("True", acked=["a", "b"])).settled
    assert not sync(6, status("True", acked=["a", "b"])).settled, "an older revision's status"
    nack = {"proxy": "b", "type": "lds", "error": "cannot bind"}
    refused = sync(5, status("False", "Nacked", acked=["a"], nacked=[nack]))
    assert refused.settled and not refused.reconciled
    assert "NACK from b (lds): cannot bind" in _sync_line(refused)
    waiting = sync(5, status("False", "Nacked", nacked=[nack], pending=["a"]))
    assert not waiting.settled and "pending: a" in _sync_line(waiting)
    assert not sync(5, status("Unknown", "PilotUnavailable")).settled
