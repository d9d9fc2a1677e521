"""A snapshot that cannot be built (a bug: validation should have refused its cause)
never ends Pilot: the failure is counted and logged, proxies keep the last config, and
the next change is pushed as usual."""

from __future__ import annotations

import logging

import pytest

from pilot.debounce import Batch
from pilot.model import MeshSnapshot, ServiceKey
from tests.pilot.fixtures import instance
from tests.pilot.test_conflicts import _metric, _pilot


async def test_a_failed_push_keeps_the_last_snapshot_and_the_next_one_goes_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pilot, registry, _ = _pilot()
    registry.set("reviews", [instance("reviews", 1)])
    await pilot.push_or_keep(Batch(0.0, 0.0))
    good = pilot.snapshot
    assert good is not None

    build = MeshSnapshot.build

    def broken(*args: object, **kwargs: object) -> MeshSnapshot:
        raise ValueError("Value out of range: 4294967296")

    monkeypatch.setattr(MeshSnapshot, "build", broken)
    registry.set("reviews", [instance("reviews", 1), instance("reviews", 2)])
    with caplog.at_level(logging.ERROR, logger="pilot.app"):
        await pilot.push_or_keep(Batch(0.0, 0.0))  # does not raise
    assert pilot.snapshot is good
    assert _metric(pilot, "pilot_push_failures_total") == 1
    assert "push failed" in caplog.text

    monkeypatch.setattr(MeshSnapshot, "build", build)
    registry.set("reviews", [instance("reviews", 1), instance("reviews", 3)])
    await pilot.push_or_keep(Batch(0.0, 0.0))
    latest = pilot.snapshot
    assert latest is not None and latest is not good
    assert len(latest.services[ServiceKey("reviews", "default")].instances) == 2
