"""Handing freed heap back to the OS once a burst of xDS traffic is over.

Every SotW ACK names every cluster the proxy watches (48 KB at 1,000 services)
and grpc reads each into buffers of about that size. A push to 2,000 proxies
frees a few hundred MB of such buffers at once, spread over glibc's arenas,
which keep the pages: RSS climbed with every round, to 600 MB after ten rounds
of `benchmarks.transport_floor --streams 2000 --ack-size 48000`, and stayed
near 280 MB with a trim after each. `malloc_trim(0)` returns every free page,
those inside the heap too.

The trimmer looks once a tick at how many requests the streams have read. After
traffic it trims as soon as a tick passes quietly, or at the latest `longest`
seconds after the previous trim while traffic goes on; it runs the trim on a
worker thread (ctypes lets go of the GIL), so the event loop keeps serving.
Where the C library has no `malloc_trim` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from collections.abc import Callable

__all__ = ["HeapTrimmer", "libc_trim"]


def libc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)` as a callable, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    def __init__(
        self,
        activity: Callable[[], int],
        trim: Callable[[], object] | None,
        *,
        tick: float = 1.0,
        longest: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`activity()`: a count that grows with the traffic (requests read)."""
        self._activity = activity
        self._trim = trim
        self._tick = tick
        self._longest = longest
        self._clock = clock
        self._seen = activity()
        self._dirty = False  # traffic since the last trim
        self._trimmed_at = clock()

    def due(self) -> bool:
        """Called once a tick: whether to trim now."""
        count = self._activity()
        busy, self._seen = count != self._seen, count
        self._dirty = self._dirty or busy
        if not self._dirty:
            return False
        return not busy or self._clock() - self._trimmed_at >= self._longest

    async def run(self) -> None:
        if self._trim is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick)
            if self.due():
                await loop.run_in_executor(None, self._trim)
                self._dirty, self._trimmed_at = False, self._clock()
