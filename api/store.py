"""Where config lives: Consul KV, one key per resource, compare-and-set writes.

Layout: ``mesh/config/<kind>/<namespace>/<name>`` (``<kind>/<name>`` for a
cluster-scoped kind) holds the resource's canonical JSON, where ``<kind>`` is
`Resource.kind_id` (``VirtualService``,
``HTTPRoute.gateway.networking.k8s.io``); the key's ModifyIndex is its
resourceVersion. Every write is a compare-and-set, so two writers never silently
overwrite each other, and a multi-resource write is one Consul transaction: all
of it lands or none. Galley writes here; Pilot only reads (and watches the
prefix).

Every write also records a revision under ``mesh/history/`` in the same
transaction (see `api.history`), so the history never disagrees with what was
stored; a transaction therefore holds two operations per resource.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import consul
import consul.aio

from api.consul_endpoints import ERRORS, ConsulEndpoints, ConsulUnavailable, pause
from api.documents import DocumentError, parse_json
from api.history import (
    DEFAULT_HISTORY_SIZE,
    Revision,
    decode_entry,
    encode_entry,
    history_key,
    history_prefix,
    next_revision,
    to_prune,
)
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
# Consul 1.16 takes at most 128 operations in one transaction: each write is two (the
# config's compare-and-set and its history entry).
MAX_WRITES = 64
_NO_LEADER = "No cluster leader"
T = TypeVar("T")
log = logging.getLogger(__name__)


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
    revision: int = 0  # the history revision the write recorded (0: not from a write)


@dataclass(frozen=True, slots=True)
class Write:
    """One operation of a transaction. expect: None = create only, N = replace version N,
    -1 = create or replace whatever is there (still atomic against concurrent writers
    through the version read just before). operation: what history records (None:
    create or update, from expect)."""

    resource: Resource
    expect: int | None
    operation: str | None = None


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

    def __init__(
        self,
        consul_addrs: str,
        token: str | None = None,
        history_size: int = DEFAULT_HISTORY_SIZE,
    ) -> None:
        self._consul = ConsulEndpoints.parse(consul_addrs, token=token)
        self._history_size = history_size

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

    async def write(self, writes: Sequence[Write], by: str = "") -> list[StoredResource]:
        """Apply writes atomically: one Consul transaction, so at most MAX_WRITES of them
        (several transactions could leave some stored and some not). `by`: the writer's
        name, for the history."""
        if len(writes) > MAX_WRITES:
            raise TooManyWrites(
                f"{len(writes)} resources would change; one apply changes at most "
                f"{MAX_WRITES} so that it stays all or nothing (split the file)"
            )
        return await self._txn(writes, by) if writes else []

    async def _txn(self, writes: Sequence[Write], by: str) -> list[StoredResource]:
        ops: list[dict[str, Any]] = []
        recorded: list[tuple[int, list[str]]] = []
        for w in writes:
            r = w.resource
            key = key_for(r.kind_id, r.namespace, r.name)
            expect = w.expect
            if expect == -1:
                try:
                    expect = (await self.get(r.kind_id, r.namespace, r.name)).version
                except NotFound:
                    expect = 0
            json_text = r.canonical_json()
            value = base64.b64encode(json_text.encode()).decode()
            ops.append({"KV": {"Verb": "cas", "Key": key, "Value": value, "Index": expect or 0}})
            operation = w.operation or ("update" if expect else "create")
            op, revision, keys = await self._history_op(
                r.kind_id, r.namespace, r.name, expect or 0, operation, by, json_text
            )
            ops.append(op)
            recorded.append((revision, keys))
        body = await self._raw_txn(ops)
        results = (body.get("Results") or [])[::2]  # each config write, not its history
        stored = [
            StoredResource(
                _with_version(w.resource, int(res["KV"]["ModifyIndex"])),
                int(res["KV"]["ModifyIndex"]),
                revision,
            )
            for w, res, (revision, _) in zip(writes, results, recorded, strict=True)
        ]
        await self._prune([k for _, keys in recorded for k in keys])
        return stored

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        expect: int | None = None,
        by: str = "",
        operation: str = "delete",
    ) -> int:
        """Delete at version `expect` (None: the current one). A missing resource is
        NotFound whatever the version (Consul's delete-cas at index 0 would succeed).
        Returns the history revision that records the delete."""
        current = (await self.get(kind, namespace, name)).version
        if expect is None:
            expect = current
        elif expect != current:
            raise Conflict(f"{_named(kind, namespace, name)} is at version {current}, not {expect}")
        history, revision, keys = await self._history_op(
            kind, namespace, name, expect, operation, by, None
        )
        ops = [
            {"KV": {"Verb": "delete-cas", "Key": key_for(kind, namespace, name), "Index": expect}},
            history,
        ]
        await self._raw_txn(ops)
        await self._prune(keys)
        return revision

    # --- history (api.history has the layout) ---

    async def history(self, kind: str, namespace: str, name: str) -> list[Revision]:
        """The recorded revisions of one resource, newest first (damaged entries left out)."""
        prefix = history_prefix(kind, namespace, name)
        _, items = await self._read(lambda c: c.kv.get(prefix, recurse=True))
        found = [
            decode_entry(item["Key"], item.get("Value"), int(item["ModifyIndex"]))
            for item in items or []
            if "/" not in item["Key"].removeprefix(prefix)
        ]
        return sorted((r for r in found if r is not None), key=lambda r: -r.revision)

    async def _history_op(
        self,
        kind: str,
        namespace: str,
        name: str,
        replaced: int,
        operation: str,
        by: str,
        resource_json: str | None,
    ) -> tuple[dict[str, Any], int, list[str]]:
        """The transaction operation that records this write as the next revision (a
        create-only put: two writers that chose the same revision cannot both land),
        its revision, and the resource's history keys then (for pruning)."""
        prefix = history_prefix(kind, namespace, name)
        _, keys = await self._read(lambda c: c.kv.get(prefix, keys=True))
        keys = [k for k in keys or [] if "/" not in k.removeprefix(prefix)]
        if not keys and replaced:
            keys = await self._baseline(kind, namespace, name, replaced)
        revision = next_revision(keys)
        key = history_key(kind, namespace, name, revision)
        value = encode_entry(operation, by, replaced, resource_json)
        encoded = base64.b64encode(value.encode()).decode()
        op = {"KV": {"Verb": "cas", "Key": key, "Value": encoded, "Index": 0}}
        return op, revision, [*keys, key]

    async def _baseline(self, kind: str, namespace: str, name: str, version: int) -> list[str]:
        """Record the stored version a first recorded change replaces (stored before
        history was kept), so that it can be rolled back to. Best effort: the history
        keys there are now."""
        key = key_for(kind, namespace, name)
        try:
            _, item = await self._read(lambda c: c.kv.get(key))
            if item is None or int(item["ModifyIndex"]) != version:
                return []  # the write's compare-and-set will fail anyway
            raw = item.get("Value") or b""
            text = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
            value = encode_entry("baseline", "", 0, text, resource_version=version)
            target = history_key(kind, namespace, name, 1)
            encoded = base64.b64encode(value.encode()).decode()
            await self._raw_txn(
                [{"KV": {"Verb": "cas", "Key": target, "Value": encoded, "Index": 0}}]
            )
            return [target]
        except (StoreError, ValueError, UnicodeDecodeError) as err:
            log.warning("no baseline revision for %s: %s", _named(kind, namespace, name), err)
            return []

    async def _prune(self, keys: Sequence[str]) -> None:
        """Delete revisions beyond the newest `history_size` of each resource. Best effort:
        a failure leaves a few extra revisions, never a wrong one."""
        by_resource: dict[str, list[str]] = {}
        for k in keys:
            by_resource.setdefault(k.rsplit("/", 1)[0], []).append(k)
        old = [k for ks in by_resource.values() for k in to_prune(ks, self._history_size)]
        for start in range(0, len(old), 2 * MAX_WRITES):
            chunk = old[start : start + 2 * MAX_WRITES]
            try:
                await self._raw_txn([{"KV": {"Verb": "delete", "Key": k}} for k in chunk])
            except StoreError as err:
                log.warning("pruning %d old revisions failed: %s", len(chunk), err)

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
