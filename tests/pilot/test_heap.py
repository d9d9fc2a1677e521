"""The heap trimmer: when it trims (pure, with a fake clock), and that it does."""

from __future__ import annotations

import asyncio
import threading

from pilot.heap import HeapTrimmer, libc_trim


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _trimmer(longest: float = 30.0) -> tuple[HeapTrimmer, list[int], _Clock]:
    count, clock = [0], _Clock()
    return HeapTrimmer(lambda: count[0], None, longest=longest, clock=clock), count, clock


def test_nothing_to_trim_without_traffic() -> None:
    trimmer, _, _ = _trimmer()
    assert [trimmer.due() for _ in range(5)] == [False] * 5


def test_trims_on_the_first_quiet_tick_after_traffic() -> None:
    trimmer, count, _ = _trimmer()
    count[0] += 3
    assert not trimmer.due()  # traffic during this tick: wait
    count[0] += 1
    assert not trimmer.due()
    assert trimmer.due()  # quiet: trim


def test_trims_while_traffic_goes_on_once_the_longest_wait_is_over() -> None:
    trimmer, count, clock = _trimmer(longest=30.0)
    for _ in range(29):
        count[0] += 1
        clock.now += 1.0
        assert not trimmer.due()
    count[0] += 1
    clock.now += 1.0
    assert trimmer.due()


def test_run_trims_off_the_event_loop_after_traffic() -> None:
    async def main() -> tuple[list[int], int]:
        count = [0]
        done = threading.Event()
        threads: list[int] = []

        def trim() -> None:
            threads.append(threading.get_ident())
            done.set()

        task = asyncio.create_task(HeapTrimmer(lambda: count[0], trim, tick=0.01).run())
        count[0] += 1
        try:
            await asyncio.wait_for(asyncio.to_thread(done.wait, 10.0), 15.0)
        finally:
            task.cancel()
        return threads, threading.get_ident()

    threads, loop_thread = asyncio.run(main())
    assert len(threads) == 1 and threads[0] != loop_thread


def test_glibc_trim_is_found_and_runs() -> None:
    trim = libc_trim()
    assert trim is not None  # the project's machines and images run glibc
    assert trim() in (0, 1)  # 1: memory was released, 0: none could be
