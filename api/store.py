"""Where config lives: Consul KV, one key per resource, compare-and-set writes.

Layout: ``mesh/config/<kind>/<namespace>/<name>`` (``<kind>/<name>`` for a
cluster-scoped kind) holds the resource's canonical JSON, where ``<kind>`` is
`Resource.kind_id` (``VirtualService``,
``HTTPRoute.gateway.networking.k8s.io``); the key's ModifyIndex is its
resourceVersion. Every write is a compare-and-set, so two writers never silently
overwrite each other, and a multi-resource write is one Consul transaction: all
of it lands or none. Galley writes here; Pilot only reads (and watches the
prefix).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import consul
import consul.aio

from api.consul_endpoints import ERRORS, ConsulEndpoints, ConsulUnavailable, pause
from api.documents import DocumentError, parse_json
from api.resources import Checked, Resource, check_document

__all__ = [
    "MAX_WRITES",
    "PREFIX",
    "ConfigStore",
    "Conflict",
    "NotFound",
    "StoreUnavailable",
    "StoredResource",
    "TooManyWrites",
    "Write",
    "key_for",
]

PREFIX = "mesh/config/"
MAX_WRITES = 64  # Consul's cap on operations in one transaction
_NO_LEADER = "No cluster leader"
T = TypeVar("T")


class StoreError(Exception):
    """Base of the store's errors."""


class Conflict(StoreError):
    """A compare-and-set lost: the resource changed (or exists, or is gone) meanwhile."""


class NotFound(StoreError):
    pass


class TooManyWrites(StoreError):
    """More writes than one Consul transaction holds: they could not be all or nothing."""


class StoreUnavailable(StoreError):
    """Consul could not be reached or answered with an error."""


def key_for(kind: str, namespace: str, name: str) -> str:
    """`kind`: a kind id (`KindInfo.id`); `namespace`: "" for a cluster-scoped kind."""
    return f"{PREFIX}{kind}/{namespace}/{name}" if namespace else f"{PREFIX}{kind}/{name}"


def _named(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


@dataclass(frozen=True, slots=True)
class StoredResource:
    resource: Resource
    version: int  # Consul ModifyIndex


@dataclass(frozen=True, slots=True)
class Write:
    """One operation of a transaction. expect: None = create only, N = replace version N,
    -1 = create or replace whatever is there (still atomic against concurrent writers
    through the version read just before)."""

    resource: Resource
    expect: int | None


def decode(
    key: str, raw: bytes | str | None, version: int, created: int = 0
) -> StoredResource | Checked:
    """Parse a stored value back into a Resource (re-validated: a bad value is reported)."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else (raw or "")
        doc = parse_json(text)
    except (DocumentError, UnicodeDecodeError) as err:
        return _bad(key, f"not JSON: {err}")
    checked = check_document(doc, key)
    if checked.resource is None or checked.errors:
        return checked
    res = checked.resource
    stamped = Resource(
        res.kind,
        res.group,
        res.version,
        res.name,
        res.namespace,
        res.spec,
        res.labels,
        res.annotations,
        str(version),
        created,
    )
    return StoredResource(stamped, version)


def _bad(key: str, message: str) -> Checked:
    from api.issues import Issue

    return Checked(key, None, [Issue("", message)])


class ConfigStore:
    """Galley's config in Consul KV, through whichever of the Consul addresses answers.

    Reads move to the next address on any failure. A write moves on only when it
    surely never reached Consul (no connection, or "no cluster leader" while the
    servers elect one): every write is a compare-and-set, but a write that may have
    landed is reported, not replayed.
    """

    def __init__(self, consul_addrs: str, token: str | None = None) -> None:
        self._consul = ConsulEndpoints.parse(consul_addrs, token=token)

    async def close(self) -> None:
        await self._consul.close()

    @property
    def endpoints(self) -> ConsulEndpoints:
        return self._consul

    async def _read(self, op: Callable[[consul.aio.Consul], Awaitable[T]]) -> T:
        try:
            return await self._consul.read(op)
        except ConsulUnavailable as err:
            raise StoreUnavailable(str(err)) from err

    async def list_resources(
        self, kind: str | None = None, namespace: str | None = None
    ) -> list[StoredResource]:
        prefix = PREFIX
        if kind:
            prefix += f"{kind}/"
            if namespace:
                prefix += f"{namespace}/"
        _, items = await self._read(lambda c: c.kv.get(prefix, recurse=True))
        out = []
        for item in items or []:
            decoded = decode(
                item["Key"], item.get("Value"), int(item["ModifyIndex"]), int(item["CreateIndex"])
            )
            if isinstance(decoded, StoredResource):
                if namespace is None or decoded.resource.namespace == namespace:
                    out.append(decoded)
        return sorted(out, key=lambda s: s.resource.key)

    async def get(self, kind: str, namespace: str, name: str) -> StoredResource:
        key = key_for(kind, namespace, name)
        _, item = await self._read(lambda c: c.kv.get(key))
        if item is None:
            raise NotFound(f"{_named(kind, namespace, name)} not found")
        decoded = decode(key, item.get("Value"), int(item["ModifyIndex"]), int(item["CreateIndex"]))
        if not isinstance(decoded, StoredResource):
            raise StoreUnavailable(f"{key} holds an invalid value: {decoded.issues}")
        return decoded

    async def write(self, writes: Sequence[Write]) -> list[StoredResource]:
        """Apply writes atomically: one Consul transaction, so at most MAX_WRITES of them
        (several transactions could leave some stored and some not)."""
        if len(writes) > MAX_WRITES:
            raise TooManyWrites(
                f"{len(writes)} resources would change; one apply changes at most "
                f"{MAX_WRITES} so that it stays all or nothing (split the file)"
            )
        return await self._txn(writes) if writes else []

    async def _txn(self, writes: Sequence[Write]) -> list[StoredResource]:
        ops: list[dict[str, Any]] = []
        for w in writes:
            r = w.resource
            key = key_for(r.kind_id, r.namespace, r.name)
            expect = w.expect
            if expect == -1:
                try:
                    expect = (await self.get(r.kind_id, r.namespace, r.name)).version
                except NotFound:
                    expect = 0
            value = base64.b64encode(r.canonical_json().encode()).decode()
            ops.append({"KV": {"Verb": "cas", "Key": key, "Value": value, "Index": expect or 0}})
        body = await self._raw_txn(ops)
        results = body.get("Results") or []
        return [
            StoredResource(
                _with_version(w.resource, int(res["KV"]["ModifyIndex"])),
                int(res["KV"]["ModifyIndex"]),
            )
            for w, res in zip(writes, results, strict=True)
        ]

    async def delete(self, kind: str, namespace: str, name: str, expect: int | None = None) -> None:
        """Delete at version `expect` (None: the current one). A missing resource is
        NotFound whatever the version (Consul's delete-cas at index 0 would succeed)."""
        current = (await self.get(kind, namespace, name)).version
        if expect is None:
            expect = current
        elif expect != current:
            raise Conflict(f"{_named(kind, namespace, name)} is at version {current}, not {expect}")
        ops = [
            {"KV": {"Verb": "delete-cas", "Key": key_for(kind, namespace, name), "Index": expect}}
        ]
        await self._raw_txn(ops)

    async def _raw_txn(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        data = json.dumps(ops)
        for attempt in range(self._consul.attempts):
            client = self._consul.client()
            try:
                resp = await client.http.put(lambda r: r, "/v1/txn", data=data)
            except ERRORS as err:
                self._consul.failed(client, err)
                if not isinstance(err, aiohttp.ClientConnectorError):
                    raise StoreUnavailable(
                        f"consul: {err or type(err).__name__} (the write may or may not "
                        "have been stored: read it back)"
                    ) from err
                await asyncio.sleep(pause(attempt))
                continue
            if resp.code == 500 and _NO_LEADER in str(resp.body):
                await asyncio.sleep(pause(attempt))  # an election: nothing was written
                continue
            return _txn_result(resp)
        raise StoreUnavailable("consul: no server could take the write (no leader?)")


def _txn_result(resp: Any) -> dict[str, Any]:
    try:
        body = json.loads(resp.body) if resp.body else {}
    except ValueError:
        body = {}
    if resp.code == 409:
        errors = "; ".join(e.get("What", "") for e in body.get("Errors") or [])
        raise Conflict(errors or "the resource changed meanwhile")
    if resp.code != 200:
        raise StoreUnavailable(f"consul answered {resp.code}: {str(resp.body)[:200]}")
    return body


def _with_version(r: Resource, version: int) -> Resource:
    return Resource(
        r.kind,
        r.group,
        r.version,
        r.name,
        r.namespace,
        r.spec,
        r.labels,
        r.annotations,
        str(version),
    )
