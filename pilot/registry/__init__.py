"""Service registries: where Pilot learns services and their healthy instances.

`Registry` is the seam; `consul.ConsulRegistry` is the real one and
`fake.FakeRegistry` stands in for it in unit tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Protocol

from api.catalog import Instance

__all__ = ["OnChange", "Registry"]

OnChange = Callable[[str], None]  # called with a short reason whenever instances change


class Registry(Protocol):
    synced: asyncio.Event  # set once the first full read is done

    def instances(self) -> Mapping[str, tuple[Instance, ...]]:
        """Healthy instances by catalog service name, as last seen."""

    async def run(self) -> None:
        """Watch until cancelled, calling the OnChange given at construction."""
