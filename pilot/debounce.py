"""Debounce: merge bursts of events into one push.

A push fires once events have been quiet for `quiet` seconds, or `max_delay`
after the first one at the latest, and only one push computation runs at a
time (events that arrive during a push start the next window). The timing
rule is `Debouncer.wait_time`, a pure function of the state and `now`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pilot.clock import Clock

__all__ = ["Batch", "Debouncer"]


@dataclass(slots=True)
class Batch:
    """The events merged into one push."""

    first: float
    last: float
    reasons: Counter[str] = field(default_factory=Counter)


class Debouncer:
    def __init__(self, quiet: float, max_delay: float, clock: Clock) -> None:
        if quiet < 0 or max_delay < quiet:
            raise ValueError("need 0 <= quiet <= max_delay")
        self.quiet = quiet
        self.max_delay = max_delay
        self._clock = clock
        self._batch: Batch | None = None
        self._wakeup = asyncio.Event()

    def add(self, reason: str) -> None:
        now = self._clock.now()
        if self._batch is None:
            self._batch = Batch(first=now, last=now)
        self._batch.last = now
        self._batch.reasons[reason] += 1
        self._wakeup.set()

    def wait_time(self, now: float) -> float | None:
        """Seconds until the pending batch is due (<= 0: now), None if nothing pends."""
        batch = self._batch
        if batch is None:
            return None
        return min(batch.last + self.quiet, batch.first + self.max_delay) - now

    def take(self) -> Batch | None:
        batch, self._batch = self._batch, None
        return batch

    async def run(self, push: Callable[[Batch], Awaitable[None]]) -> None:
        """Forever: wait for events, debounce, push (one at a time)."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while (wait := self.wait_time(self._clock.now())) is not None and wait > 0:
                await self._clock.sleep(wait)
            batch = self.take()
            if batch is not None:
                await push(batch)
