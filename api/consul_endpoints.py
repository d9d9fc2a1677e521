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
from collections.abc import Sequence
from typing import Any

import consul.aio

from api.addrs import parse_addrs

__all__ = ["ConsulEndpoints"]

log = logging.getLogger(__name__)


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

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        await asyncio.gather(*self._closing, return_exceptions=True)


async def _close(client: Any) -> None:
    await client.close()
