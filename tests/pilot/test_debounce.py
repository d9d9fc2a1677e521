"""Debounce timing with a fake clock: no test sleeps on wall-clock time."""

from __future__ import annotations

import asyncio

import pytest

from pilot.clock import FakeClock
from pilot.debounce import Batch, Debouncer


def test_wait_time_follows_quiet_period_and_max_delay() -> None:
    clock = FakeClock(start=0.0)
    d = Debouncer(quiet=0.1, max_delay=1.0, clock=clock)
    assert d.wait_time(0.0) is None
    d.add("a")
    assert d.wait_time(0.0) == pytest.approx(0.1)
    clock._now = 0.05
    d.add("b")  # extends the quiet period
    assert d.wait_time(0.05) == pytest.approx(0.1)
    # Events every 50 ms keep it quiet-less; the max delay still bounds the wait.
    for i in range(2, 30):
        clock._now = i * 0.05
        d.add("c")
    assert d.wait_time(clock.now()) == pytest.approx(1.0 - clock.now())
    assert d.wait_time(1.0) == pytest.approx(0.0)
    batch = d.take()
    assert batch is not None and batch.first == 0.0 and sum(batch.reasons.values()) == 30
    assert d.take() is None and d.wait_time(1.0) is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Debouncer(quiet=2.0, max_delay=1.0, clock=FakeClock())


async def test_run_pushes_once_per_quiet_burst_and_one_at_a_time() -> None:
    clock = FakeClock(start=0.0)
    d = Debouncer(quiet=0.1, max_delay=1.0, clock=clock)
    pushes: list[tuple[float, Batch]] = []
    release = asyncio.Event()

    async def push(batch: Batch) -> None:
        pushes.append((clock.now(), batch))
        await release.wait()

    task = asyncio.create_task(d.run(push))
    try:
        d.add("x")
        await clock.advance(0.05)
        d.add("y")
        await clock.advance(0.05)
        assert pushes == []  # still within the quiet period of "y"
        await clock.advance(0.06)
        assert len(pushes) == 1 and pushes[0][0] == pytest.approx(0.15)
        assert dict(pushes[0][1].reasons) == {"x": 1, "y": 1}
        # Events during a running push wait for it to finish.
        d.add("z")
        await clock.advance(0.5)
        assert len(pushes) == 1
        release.set()
        for _ in range(5):
            await asyncio.sleep(0)
        await clock.advance(0.1)
        assert len(pushes) == 2 and dict(pushes[1][1].reasons) == {"z": 1}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
