"""Several Consul addresses, one in use: fail over to the next when it stops answering.

Pilot and Galley take `--consul-addr HOST:PORT[,HOST:PORT...]`: the agents (or
servers) of one Consul cluster. Any of them serves the same catalog and KV
(Raft replicates them; reads and writes are forwarded to the leader), so a
client keeps one in use and moves on to the next when a request to it fails
with a connection error. Blocking-query indexes are Raft indexes, the same on
every server, so a watch resumes where it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
import consul
import consul.aio

from api.addrs import parse_addrs

__all__ = ["ERRORS", "ConsulEndpoints", "ConsulUnavailable", "pause"]

log = logging.getLogger(__name__)

# What a request to one Consul address can fail with (and the next address may not).
ERRORS = (consul.ConsulException, aiohttp.ClientError, OSError, TimeoutError)
T = TypeVar("T")


class ConsulUnavailable(Exception):
    """No Consul address answered the request."""


def pause(attempt: int) -> float:
    """Between attempts: none for the first failover, then up to a second (an election
    takes a few)."""
    return 0.0 if attempt == 0 else min(0.25 * attempt, 1.0)


class ConsulEndpoints:
    """The addresses of one Consul cluster and a client for the one in use."""

    def __init__(
        self, addrs: Sequence[tuple[str, int]], token: str | None = None, **client_args: object
    ) -> None:
        if not addrs:
            raise ValueError("at least one Consul address is needed")
        self._addrs = list(addrs)
        self._token = token
        self._client_args = client_args
        self._current = 0
        self._client: consul.aio.Consul | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    def parse(cls, value: str, **client_args: object) -> ConsulEndpoints:
        return cls(parse_addrs(value), **client_args)  # type: ignore[arg-type]

    @property
    def address(self) -> str:
        host, port = self._addrs[self._current]
        return f"{host}:{port}"

    @property
    def count(self) -> int:
        return len(self._addrs)

    def client(self) -> consul.aio.Consul:
        if self._client is None:
            host, port = self._addrs[self._current]
            self._client = consul.aio.Consul(
                host=host, port=port, token=self._token, **self._client_args
            )
        return self._client

    def failed(self, client: consul.aio.Consul, err: BaseException) -> None:
        """A request through `client` failed: move to the next address (once per client,
        however many requests saw it fail)."""
        if client is not self._client or len(self._addrs) == 1:
            return
        was = self.address
        # Requests still in flight on the old client fail and retry on the new one.
        task = asyncio.get_running_loop().create_task(_close(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._client = None
        self._current = (self._current + 1) % len(self._addrs)
        log.warning(
            "consul at %s failed (%s): using %s", was, err or type(err).__name__, self.address
        )

    @property
    def attempts(self) -> int:
        """Tries per request: every address twice, at least two."""
        return max(2, 2 * len(self._addrs))

    async def read(self, op: Callable[[consul.aio.Consul], Awaitable[T]]) -> T:
        """A read (safe to repeat), moving on to the next address when one fails."""
        last: BaseException | None = None
        for attempt in range(self.attempts):
            client = self.client()
            try:
                return await op(client)
            except ERRORS as err:
                self.failed(client, err)
                last = err
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(pause(attempt))
        raise ConsulUnavailable(f"consul: {last or type(last).__name__}") from last

    async def write(self, op: Callable[[consul.aio.Consul], Awaitable[T]]) -> T:
        """A write, moved on to the next address only when it surely never reached Consul
        (the connection was refused); any other failure may have stored it."""
        last: BaseException | None = None
        for attempt in range(self.attempts):
            client = self.client()
            try:
                return await op(client)
            except ERRORS as err:
                self.failed(client, err)
                last = err
                if not isinstance(err, aiohttp.ClientConnectorError):
                    raise ConsulUnavailable(
                        f"consul: {err or type(err).__name__} (the change may or may not have "
                        "been stored: read it back)"
                    ) from err
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(pause(attempt))
        raise ConsulUnavailable(f"consul: {last or type(last).__name__}") from last

    async def watch_prefix(
        self,
        prefix: str,
        on_items: Callable[[list[dict[str, Any]]], None],
        on_error: Callable[[BaseException, float], None],
        *,
        wait: str = "55s",
        retry_max: float = 5.0,
        errors: tuple[type[BaseException], ...] = (*ERRORS, ValueError),
        reread_after_error: bool = False,
    ) -> None:
        """Forever: a blocking query on the KV prefix, `on_items(every item under it)` once
        at first and each time its index moves. On a failure `on_error(err, delay)`, then
        the next address and a retry with backoff: the caller keeps what it was last given.
        `reread_after_error`: the first read that succeeds after a failure is given to
        `on_items` at once, changed or not (for a caller that drops what it had on a
        failure)."""
        index, delay = 0, 0.25
        while True:
            client = self.client()
            try:
                new_index, items = await client.kv.get(
                    prefix, recurse=True, index=index or None, wait=wait
                )
            except errors as err:
                if isinstance(err, ERRORS):
                    self.failed(client, err)
                on_error(err, delay)
                if reread_after_error:
                    index = 0
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry_max)
                continue
            delay = 0.25
            idx = int(new_index or 0)
            if index and idx == index:
                continue
            index = idx if idx >= index else 0  # Consul's index went back (a reset): re-read
            on_items(items or [])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        await asyncio.gather(*self._closing, return_exceptions=True)


async def _close(client: Any) -> None:
    await client.close()
