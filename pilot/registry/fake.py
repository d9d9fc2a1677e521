"""An in-memory Registry for unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from api.catalog import Instance
from pilot.registry import OnChange

__all__ = ["FakeRegistry"]


class FakeRegistry:
    def __init__(self, on_change: OnChange) -> None:
        self._on_change = on_change
        self.synced = asyncio.Event()
        self.synced.set()
        self._instances: dict[str, tuple[Instance, ...]] = {}

    def instances(self) -> Mapping[str, tuple[Instance, ...]]:
        return dict(self._instances)

    def set(self, service: str, instances: list[Instance]) -> None:
        if instances:
            self._instances[service] = tuple(instances)
        else:
            self._instances.pop(service, None)
        self._on_change("fake")

    async def run(self) -> None:
        await asyncio.Event().wait()
