"""An in-memory ConfigSource for unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from api.resources import Resource
from pilot.registry import OnChange

__all__ = ["FakeConfigSource"]


class FakeConfigSource:
    def __init__(self, on_change: OnChange) -> None:
        self._on_change = on_change
        self.synced = asyncio.Event()
        self.synced.set()
        self._resources: list[Resource] = []

    def resources(self) -> Sequence[Resource]:
        return list(self._resources)

    def set(self, resources: Sequence[Resource]) -> None:
        self._resources = list(resources)
        self._on_change("config")

    async def run(self) -> None:
        await asyncio.Event().wait()
