"""Reading an answer from another server (Pilot, Citadel, a sidecar's stats) with a
size bound, so that a wrong or hostile peer cannot make Galley hold unbounded memory."""

from __future__ import annotations

import aiohttp

__all__ = ["read_bounded"]

_CHUNK = 64 * 1024


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None when it is over `limit` bytes (`content.read(n)` alone
    returns only what has arrived so far)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
