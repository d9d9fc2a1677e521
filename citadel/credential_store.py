"""Gateway credentials in Consul KV, sealed, and a watch that keeps them in memory.

Layout: ``mesh/secrets/<namespace>/<name>`` holds the credential's document
(`citadel.credentials.to_document`) sealed by `citadel.sealing.Sealer` with
``<namespace>/<name>`` as associated data. Galley's config lives beside it
under ``mesh/config/``: Galley never reads this prefix, and Citadel reads only
the ReferenceGrants of that one (`citadel.grants`).

The HTTP API writes and lists through Consul (read-your-writes); SDS reads
only the in-memory `CredentialMap`, which one blocking query on the prefix
keeps current. When Consul is unreachable the watch retries with backoff and
the last map stays in force (gateways keep their certificates); a value that
does not open or does not check is logged by name and left out, never fatal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import consul
import consul.aio

from api.consul_endpoints import ConsulEndpoints, ConsulUnavailable
from citadel.credentials import (
    CredentialError,
    CredentialMap,
    GatewayCredential,
    check_name,
    credential_from_document,
    to_document,
)
from citadel.metrics import CitadelMetrics
from citadel.sealing import Sealer, SealError

__all__ = ["PREFIX", "Conflict", "CredentialStore", "Listed", "StoreUnavailable", "key_for"]

log = logging.getLogger(__name__)

PREFIX = "mesh/secrets/"
_WRITE_ATTEMPTS = 3  # compare-and-set rounds against concurrent writers
T = TypeVar("T")


class StoreUnavailable(Exception):
    """Consul could not be reached or answered with an error."""


class Conflict(Exception):
    """Another writer kept changing the credential meanwhile."""


def key_for(namespace: str, name: str) -> str:
    return f"{PREFIX}{namespace}/{name}"


def revision_of(sealed: bytes | str) -> str:
    """A digest of the sealed value: new at every write (fresh nonce), says nothing of it."""
    raw = sealed.encode() if isinstance(sealed, str) else sealed
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Listed:
    name: str
    credential: GatewayCredential | None  # None: stored, but it does not open or check
    problem: str = ""


class CredentialStore:
    def __init__(
        self,
        consul_addrs: str,
        sealer: Sealer,
        view: CredentialMap,
        metrics: CitadelMetrics,
        *,
        wait: str = "55s",
        retry_max: float = 5.0,
    ) -> None:
        self._consul = ConsulEndpoints.parse(consul_addrs)
        self._sealer = sealer
        self.view = view
        self._metrics = metrics
        self._wait = wait
        self._retry_max = retry_max
        self._decoded: dict[str, tuple[int, GatewayCredential | None]] = {}  # key -> (index, it)
        self.synced = asyncio.Event()  # set once the first read of the prefix is in the map

    async def close(self) -> None:
        await self._consul.close()

    # --- reading one value ---

    def _open(self, key: str, value: bytes | str | None) -> GatewayCredential | str:
        """The credential at `key`, or what is wrong with it (never any of its content)."""
        namespace, _, name = key.removeprefix(PREFIX).partition("/")
        try:
            check_name(namespace, name)
            plaintext = self._sealer.open(f"{namespace}/{name}", value or b"")
            try:
                doc = json.loads(plaintext)
            except ValueError:
                raise CredentialError("body", "the sealed document is not JSON") from None
            return credential_from_document(namespace, name, doc, revision_of(value or b""))
        except (SealError, CredentialError) as err:
            return str(err)
        except Exception as err:  # whatever a stored value does, the watch goes on
            return f"unreadable ({type(err).__name__})"

    def _decode(self, key: str, value: bytes | str | None) -> GatewayCredential | None:
        opened = self._open(key, value)
        if isinstance(opened, GatewayCredential):
            return opened
        self._metrics.credentials_invalid.inc()
        log.error("ignoring gateway credential at %s: %s", key, opened)
        return None

    # --- the HTTP API's operations, through Consul ---

    async def _read(self, op: Callable[[consul.aio.Consul], Awaitable[T]]) -> T:
        try:
            return await self._consul.read(op)
        except ConsulUnavailable as err:
            raise StoreUnavailable(str(err)) from err

    async def _write(self, op: Callable[[consul.aio.Consul], Awaitable[T]]) -> T:
        try:
            return await self._consul.write(op)
        except ConsulUnavailable as err:
            raise StoreUnavailable(str(err)) from err

    async def _index(self, key: str) -> int:
        _, item = await self._read(lambda c: c.kv.get(key))
        return int(item["ModifyIndex"]) if item else 0

    async def _cas_put(self, key: str, value: str, index: int) -> bool:
        """Index 0: only if absent; otherwise only if still at that index."""
        return bool(await self._write(lambda c: c.kv.put(key, value, cas=index)))

    async def _cas_delete(self, key: str, index: int) -> bool:
        return bool(await self._write(lambda c: c.kv.delete(key, cas=index)))

    async def put(self, cred: GatewayCredential) -> tuple[bool, GatewayCredential]:
        """Create or replace; returns (created, the credential as stored)."""
        key = key_for(cred.namespace, cred.name)
        plaintext = json.dumps(to_document(cred), separators=(",", ":")).encode()
        for _ in range(_WRITE_ATTEMPTS):
            index = await self._index(key)
            sealed = self._sealer.seal(f"{cred.namespace}/{cred.name}", plaintext)
            if await self._cas_put(key, sealed, index):
                return index == 0, dataclasses.replace(cred, revision=revision_of(sealed))
        raise Conflict(f"{cred.namespace}/{cred.name} kept changing meanwhile; try again")

    async def entries(self, namespace: str) -> list[Listed]:
        prefix = key_for(namespace, "")
        _, items = await self._read(lambda c: c.kv.get(prefix, recurse=True))
        out = []
        for item in items or []:
            name = str(item["Key"]).removeprefix(prefix)
            if not name or "/" in name:
                continue
            opened = self._open(str(item["Key"]), item.get("Value"))
            if isinstance(opened, GatewayCredential):
                out.append(Listed(name, opened))
            else:
                out.append(Listed(name, None, opened))
        return sorted(out, key=lambda entry: entry.name)

    async def delete(self, namespace: str, name: str) -> bool:
        """False when there was nothing to delete."""
        key = key_for(namespace, name)
        for _ in range(_WRITE_ATTEMPTS):
            index = await self._index(key)
            if index == 0:
                return False
            if await self._cas_delete(key, index):
                return True
        raise Conflict(f"{namespace}/{name} kept changing meanwhile; try again")

    # --- the watch that feeds SDS ---

    async def run(self) -> None:
        """Until cancelled. Nothing Consul answers stops it: Citadel's other work (every
        workload's certificates) must not end with a failed credential watch."""
        await self._consul.watch_prefix(
            PREFIX,
            self._load,
            self._failed,
            wait=self._wait,
            retry_max=self._retry_max,
            errors=(Exception,),  # whatever it is, SDS must go on
        )

    def _failed(self, err: BaseException, delay: float) -> None:
        self._metrics.credential_watch_errors.inc()
        log.warning(
            "consul watch of gateway credentials failed (%s); keeping the last %d, "
            "retrying in %.1fs",
            err or type(err).__name__,
            len(self.view),
            delay,
        )

    def _load(self, items: list[dict[str, Any]]) -> None:
        decoded: dict[str, tuple[int, GatewayCredential | None]] = {}
        for item in items:
            key, modified = str(item["Key"]), int(item["ModifyIndex"])
            if key.endswith("/"):
                continue  # a "folder" someone made by hand
            held = self._decoded.get(key)
            cred = held[1] if held and held[0] == modified else self._decode(key, item.get("Value"))
            decoded[key] = (modified, cred)
        self._decoded = decoded
        good = [cred for _, cred in decoded.values() if cred is not None]
        creds = {(c.namespace, c.name): c for c in good}
        for namespace, name in sorted(self.view.replace(creds)):
            now = "changed" if (namespace, name) in creds else "removed"
            log.info("gateway credential %s/%s %s", namespace, name, now)
        self._metrics.credentials.set(len(creds))
        self.synced.set()
