"""The contract every per-type generator meets."""

from __future__ import annotations

from typing import Protocol

from pilot.model import Proxy
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource

__all__ = ["Generator"]


class Generator(Protocol):
    type_url: str

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        """Does this change concern a stream watching `names` of this type?"""

    def generate(
        self,
        ctx: PushContext,
        proxy: Proxy,
        names: frozenset[str],
        change: Change | None,
    ) -> list[Resource]:
        """The resources to send; `change` narrows a push, None means everything watched."""
