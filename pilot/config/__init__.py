"""Mesh config sources: where Pilot learns the Istio resources Galley stored.

`ConfigSource` is the seam; `consul.ConsulConfigSource` watches Consul KV and
`fake.FakeConfigSource` stands in for unit tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from api.resources import Resource

__all__ = ["ConfigSource"]


class ConfigSource(Protocol):
    synced: asyncio.Event  # set once the first full read is done

    def resources(self) -> Sequence[Resource]:
        """Every valid resource, as last seen."""

    async def run(self) -> None:
        """Watch until cancelled, calling the OnChange given at construction."""
