"""ReferenceGrants, read from Galley's config in Consul KV: which gateways may use a
credential of another namespace (``kubernetes-gateway://NS/NAME``).

A gateway of namespace A may use the credential NAME of namespace B while a
ReferenceGrant in B allows ``from: {group: gateway.networking.k8s.io, kind: Gateway,
namespace: A}`` ``to: {group: "", kind: Secret}`` (with ``name: NAME`` or no name):
the rule the Gateway API translation applies to a listener's certificateRefs
(`api.gateway_api.translate.certificate_ref_allowed`), asked again here because
Citadel trusts the gateway's token, not the config it was sent.

Galley stores each grant at ``mesh/config/ReferenceGrant.gateway.networking.k8s.io/
<namespace>/<name>``. One blocking query on that prefix keeps `GrantMap` current, every
value decoded and validated again as Pilot reads config (`api.store.decode`). Fail
closed: until the first read and while reads fail no grant is in force, and a value
that does not decode, or is stored under another name than its own, is no grant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from api.consul_endpoints import ConsulEndpoints
from api.gateway_api.translate import certificate_ref_allowed
from api.resources import GATEWAY_API, Resource, kind_id
from api.store import PREFIX as CONFIG_PREFIX
from api.store import StoredResource, decode, key_for
from citadel.metrics import CitadelMetrics

__all__ = ["PREFIX", "GrantMap", "GrantSource", "GrantWatch"]

log = logging.getLogger(__name__)

_KIND = kind_id("ReferenceGrant", GATEWAY_API)
PREFIX = f"{CONFIG_PREFIX}{_KIND}/"


class GrantSource(Protocol):
    """What SDS asks whether a gateway may use a credential of another namespace
    (`GrantMap`; Consul feeds it)."""

    def allows(self, gateway_namespace: str, namespace: str, credential: str) -> bool: ...

    def watch(self, event: asyncio.Event) -> None:
        """Set `event` whenever the grants change."""

    def unwatch(self, event: asyncio.Event) -> None: ...


class GrantMap:
    """The ReferenceGrants in force, in memory. The Consul watch replaces them all at
    each change; tests replace them directly."""

    def __init__(self) -> None:
        self._grants: tuple[Resource, ...] | None = None  # None: not known, none in force
        self._answers: dict[tuple[str, str, str], bool] = {}
        self._watchers: set[asyncio.Event] = set()

    def __len__(self) -> int:
        return len(self._grants or ())

    @property
    def known(self) -> bool:
        return self._grants is not None

    def allows(self, gateway_namespace: str, namespace: str, credential: str) -> bool:
        if self._grants is None:
            return False
        question = (gateway_namespace, namespace, credential)
        answer = self._answers.get(question)
        if answer is None:
            answer = certificate_ref_allowed(self._grants, gateway_namespace, namespace, credential)
            self._answers[question] = answer
        return answer

    def watch(self, event: asyncio.Event) -> None:
        """Set `event` whenever the grants change (any of them: they are few and rarely
        change, and a woken stream sends nothing unless what it serves changed)."""
        self._watchers.add(event)

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers.discard(event)

    def replace(self, grants: Sequence[Resource] | None) -> bool:
        """Hold exactly `grants` (None: they cannot be read, so none is in force); wake the
        watchers if that is a change. Returns whether it was."""
        new = None if grants is None else tuple(sorted(grants, key=lambda r: r.key))
        if new == self._grants:
            return False
        self._grants, self._answers = new, {}
        for event in self._watchers:
            event.set()
        return True


class GrantWatch:
    """Keeps a `GrantMap` equal to the ReferenceGrants in Consul KV, until cancelled."""

    def __init__(
        self,
        consul_addrs: str,
        view: GrantMap,
        metrics: CitadelMetrics,
        *,
        wait: str = "55s",
        retry_max: float = 5.0,
    ) -> None:
        self._consul = ConsulEndpoints.parse(consul_addrs)
        self.view = view
        self._metrics = metrics
        self._wait = wait
        self._retry_max = retry_max
        self._held: dict[str, tuple[int, Resource | None]] = {}  # key -> (index, grant)
        self.synced = asyncio.Event()  # set once the first read is in the map

    async def close(self) -> None:
        await self._consul.close()

    async def run(self) -> None:
        """Nothing Consul answers stops it: Citadel's other work must go on."""
        await self._consul.watch_prefix(
            PREFIX,
            self._load,
            self._failed,
            wait=self._wait,
            retry_max=self._retry_max,
            errors=(Exception,),
            reread_after_error=True,  # the grants were dropped: take them back at once
        )

    def _failed(self, err: BaseException, delay: float) -> None:
        self._metrics.grant_watch_errors.inc()
        if self.view.replace(None):
            log.warning(
                "consul watch of ReferenceGrants failed (%s): no credential of another "
                "namespace is served until they are read again",
                err or type(err).__name__,
            )
        log.debug("retrying the ReferenceGrant watch in %.1fs", delay)

    def _decode(self, key: str, value: Any, index: int) -> Resource | None:
        try:
            decoded = decode(key, value, index)
        except Exception as err:  # whatever a stored value holds, the watch goes on
            log.error("ignoring ReferenceGrant at %s: unreadable (%s)", key, type(err).__name__)
            return None
        if not isinstance(decoded, StoredResource):
            problems = "; ".join(str(i) for i in decoded.issues)
            log.error("ignoring ReferenceGrant at %s: %s", key, problems)
            return None
        grant = decoded.resource
        if grant.kind_id != _KIND or key != key_for(_KIND, grant.namespace, grant.name):
            log.error("ignoring ReferenceGrant at %s: it is %s", key, grant.ref)
            return None
        return grant

    def _load(self, items: list[dict[str, Any]]) -> None:
        held: dict[str, tuple[int, Resource | None]] = {}
        for item in items:
            key, index = str(item["Key"]), int(item["ModifyIndex"])
            if key.endswith("/"):
                continue  # a "folder" someone made by hand
            before = self._held.get(key)
            if before is not None and before[0] == index:
                grant = before[1]  # decoded (or refused) already
            else:
                grant = self._decode(key, item.get("Value"), index)
                if grant is None:
                    self._metrics.grants_invalid.inc()
            held[key] = (index, grant)
        self._held = held
        grants = [g for _, g in held.values() if g is not None]
        if self.view.replace(grants):
            log.info("%d ReferenceGrant(s) in force", len(grants))
        self._metrics.grants.set(len(grants))
        self.synced.set()
