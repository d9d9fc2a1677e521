"""A Pilot serving ADS in-process over a real gRPC port, from a fake registry and config."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from pilot.app import Pilot
from pilot.config.fake import FakeConfigSource
from pilot.metrics import Metrics
from pilot.registry import OnChange
from pilot.registry.fake import FakeRegistry
from pilot.settings import PilotSettings
from tests.pilot.fixtures import instance


@dataclass
class Running:
    pilot: Pilot
    registry: FakeRegistry
    channel: grpc.aio.Channel


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    holder: dict[str, FakeRegistry] = {}

    def factory(on_change: OnChange, _: Metrics) -> FakeRegistry:
        holder["r"] = FakeRegistry(on_change)
        return holder["r"]

    settings = PilotSettings(
        grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0", debounce_quiet=0.0, debounce_max=0.01
    )
    pilot = Pilot(
        settings,
        registry_factory=factory,
        config_factory=lambda on_change, _: FakeConfigSource(on_change),
    )
    started = asyncio.Event()
    task = asyncio.create_task(pilot.run(started))
    await asyncio.wait_for(started.wait(), 10)
    holder["r"].set("reviews", [instance("reviews", 1)])
    await asyncio.wait_for(pilot.ready.wait(), 10)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{pilot.grpc_port}")
    try:
        yield Running(pilot, holder["r"], channel)
    finally:
        await channel.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
