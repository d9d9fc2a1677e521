"""A snapshot that cannot be built (a bug: validation should have refused its cause)
never ends Pilot and never stops the rest of the mesh: config that breaks the build is
left out and reported while everything else is pushed; when even the unchanged config
cannot be built, the failure is counted and logged, proxies keep the last config, and
the next change is pushed as usual."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pilot.debounce import Batch
from pilot.model import MeshSnapshot, ServiceKey
from tests.pilot.fixtures import instance
from tests.pilot.test_conflicts import _metric, _pilot, resources, service_entry


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


async def test_config_that_breaks_the_build_is_left_out_and_the_rest_is_pushed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pilot, registry, config = _pilot()
    registry.set("reviews", [instance("reviews", 1)])
    good = resources(service_entry("api", "team-a", "api.example.com"), 1)
    config.set(good)
    await pilot.push_or_keep(Batch(0.0, 0.0))

    build = MeshSnapshot.build

    def breaks_on_poison(*args: Any, **kwargs: Any) -> MeshSnapshot:
        config_arg = args[2] if len(args) > 2 else kwargs.get("config", ())
        if any(r.name == "poison" for r in config_arg):
            raise ValueError("Value out of range: 4294967296")
        return build(*args, **kwargs)

    monkeypatch.setattr(MeshSnapshot, "build", breaks_on_poison)
    poison = resources(service_entry("poison", "team-b", "poison.example.com"), 2)
    fine = resources(service_entry("web", "team-b", "web.example.com"), 3)
    config.set(good + poison + fine)
    registry.set("reviews", [instance("reviews", 1), instance("reviews", 2)])
    with caplog.at_level(logging.ERROR, logger="pilot.app"):
        await pilot.push_or_keep(Batch(0.0, 0.0))

    snap = pilot.snapshot
    assert snap is not None
    # The endpoint change and the other new resource went out; only the culprit did not.
    assert len(snap.services[ServiceKey("reviews", "default")].instances) == 2
    refs = {r.ref for r in snap.config.resources}
    assert "ServiceEntry/team-b/web" in refs
    assert "ServiceEntry/team-b/poison" not in refs
    assert any("ServiceEntry/team-b/poison" in w and "4294967296" in w for w in snap.withheld)
    assert "ServiceEntry/team-b/poison left out" in caplog.text
    assert _metric(pilot, "pilot_config_left_out") == 1
    assert _metric(pilot, "pilot_push_failures_total") == 0

    # Fixed (here: deleted), it is no longer reported.
    config.set(good + fine)
    await pilot.push_or_keep(Batch(0.0, 0.0))
    assert _metric(pilot, "pilot_config_left_out") == 0
    assert pilot.snapshot is not None and not pilot.snapshot.withheld


async def test_when_even_the_unchanged_config_cannot_be_built_the_last_snapshot_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pilot, registry, config = _pilot()
    registry.set("reviews", [instance("reviews", 1)])
    config.set(resources(service_entry("api", "team-a", "api.example.com"), 1))
    await pilot.push_or_keep(Batch(0.0, 0.0))
    good = pilot.snapshot

    def broken(*args: object, **kwargs: object) -> MeshSnapshot:
        raise ValueError("the catalog, not config")

    monkeypatch.setattr(MeshSnapshot, "build", broken)
    config.set(resources(service_entry("web", "team-b", "web.example.com"), 2))
    await pilot.push_or_keep(Batch(0.0, 0.0))
    assert pilot.snapshot is good
    assert _metric(pilot, "pilot_push_failures_total") == 1
