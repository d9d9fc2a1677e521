"""The SDS fixtures (`tests.citadel.sds_fakes`): a server and the streams opened on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.citadel.sds_fakes import Citadel, OpenStream, open_streams, sds_citadel


@pytest.fixture
async def citadel(tmp_path: Path) -> AsyncIterator[Citadel]:
    yield sds_citadel(tmp_path)


@pytest.fixture
async def streams(citadel: Citadel) -> AsyncIterator[OpenStream]:
    async for open_stream in open_streams(citadel):
        yield open_stream
