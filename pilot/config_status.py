"""Which proxies applied each config resource: per resource revision, ACKed, NACKed, pending.

A published snapshot *carries* the config resources whose revision (Consul
ModifyIndex) changed since the previous snapshot. The push that first brings a
connection up to (or past) that snapshot either sends it nothing but endpoints
(it is not affected by the change) or sends it responses of some config types:
the connection is then an *affected* proxy of the snapshot, and it has applied
the change once it ACKed, for each of those types, that response or a later
one that supersedes it. A NACK of that response (or a later one) is reported
with the type and Envoy's error_detail, never dropped.

Only carrying snapshots that some resource's current revision came with are
remembered, and at most the last `window` of them, so memory stays flat however
long Pilot runs; a resource whose carrying snapshot fell out of the
window is reported with the connections that have applied everything they were
sent ("acked") and the others as "unknown", never as wrong.

The stream core (`pilot.xds.stream.Streams`) calls the hooks; `report` is what
``GET /debug/config_status`` serves. Everything here is synchronous and
bounded: a hook is a few dict operations.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from api.resources import Resource
from pilot.xds import typeurls

__all__ = ["ConfigStatus", "answer"]

NONCES_PER_CONNECTION = 128  # responses remembered per connection until answered


@dataclass(slots=True)
class _Nack:
    response: int  # the sequence number of the response Envoy refused
    clear_after: int  # an ACK of a response after this one means the proxy recovered
    error: str


@dataclass(slots=True)
class _TypeState:
    last_sent: int = 0
    applied: int = 0  # every response of this type up to here is in force on the proxy
    nack: _Nack | None = None
    # Delta: responses ACKed while an earlier NACK stands (each carries its own resources).
    acked_past_nack: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _Conn:
    proxy: str
    delta: bool
    evaluated: int  # the snapshot version its config was last brought up to
    seq: int = 0  # responses and NACKs, in the order they happened on this stream
    types: dict[str, _TypeState] = field(default_factory=dict)
    nonces: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)
    pushing: dict[str, int] | None = None  # type -> response seq, during a push

    def state(self, type_url: str) -> _TypeState:
        found = self.types.get(type_url)
        if found is None:
            found = self.types[type_url] = _TypeState()
        return found

    def synced(self) -> bool:
        """Everything it was sent is in force."""
        return all(s.nack is None and s.applied >= s.last_sent for s in self.types.values())


@dataclass(slots=True)
class _Carrier:
    version: int
    # connection id -> the responses (type -> seq) the push of this change sent it
    affected: dict[str, dict[str, int]] = field(default_factory=dict)


class ConfigStatus:
    """Per config resource, the proxies that applied its current revision."""

    def __init__(self, window: int = 256) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._window = window
        self._carriers: deque[_Carrier] = deque()
        self._by_version: dict[int, _Carrier] = {}
        self._current: dict[str, tuple[int, int]] = {}  # ref -> (revision, carrying version)
        self._conns: dict[str, _Conn] = {}
        self.version = 0

    # --- the snapshot side (Pilot.push) ---

    def published(self, version: int, config: Iterable[Resource]) -> None:
        """Snapshot `version` of this config is about to be pushed."""
        revisions = {r.ref: _revision(r) for r in config}
        current: dict[str, tuple[int, int]] = {}
        carried = False
        for ref, revision in revisions.items():
            held = self._current.get(ref)
            if held is not None and held[0] == revision:
                current[ref] = held
            else:
                current[ref] = (revision, version)
                carried = True
        self._current = current
        self.version = version
        if carried:
            carrier = _Carrier(version)
            self._carriers.append(carrier)
            self._by_version[version] = carrier
        # Keep only what some resource's current revision was carried by, and at most
        # `window` of those.
        wanted = {v for _, v in current.values()}
        kept = [c for c in self._carriers if c.version in wanted][-self._window :]
        if len(kept) != len(self._carriers):
            self._carriers = deque(kept)
            self._by_version = {c.version: c for c in kept}

    # --- the stream side (Streams) ---

    def connected(self, conn_id: str, proxy: str, delta: bool, version: int) -> None:
        """A new stream; it gets the config of snapshot `version` without a push of it."""
        self._conns[conn_id] = _Conn(proxy, delta, version)

    def disconnected(self, conn_id: str) -> None:
        self._conns.pop(conn_id, None)
        for carrier in self._carriers:
            carrier.affected.pop(conn_id, None)

    def push_began(self, conn_id: str) -> None:
        conn = self._conns.get(conn_id)
        if conn is not None:
            conn.pushing = {}

    def push_ended(self, conn_id: str, version: int) -> None:
        """The push that brought the connection to snapshot `version` is written."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        sent, conn.pushing = conn.pushing or {}, None
        if version <= conn.evaluated:
            return
        # Endpoints alone are not a config change: an EDS-only push leaves it unaffected.
        if any(t != typeurls.ENDPOINT for t in sent):
            for carrier in reversed(self._carriers):
                if carrier.version <= conn.evaluated:
                    break
                if carrier.version <= version:
                    carrier.affected[conn_id] = sent
        conn.evaluated = version

    def sent(self, conn_id: str, type_url: str, nonce: str) -> None:
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        conn.seq += 1
        conn.state(type_url).last_sent = conn.seq
        conn.nonces[(type_url, nonce)] = conn.seq
        conn.nonces.move_to_end((type_url, nonce))
        if len(conn.nonces) > NONCES_PER_CONNECTION:
            conn.nonces.popitem(last=False)
        if conn.pushing is not None:
            conn.pushing[type_url] = conn.seq

    def acked(self, conn_id: str, type_url: str, nonce: str) -> None:
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        response = conn.nonces.pop((type_url, nonce), None)
        if response is None:
            return  # older than we remember: it says nothing about what is in force now
        state = conn.state(type_url)
        if state.nack is not None:
            if response <= state.nack.clear_after:
                # What was refused is still not in force; in Delta, what this one carried is.
                if conn.delta and len(state.acked_past_nack) < NONCES_PER_CONNECTION:
                    state.acked_past_nack.add(response)
                return
            state.nack = None
            state.acked_past_nack.clear()
        state.applied = max(state.applied, response)

    def unsubscribed(self, conn_id: str, type_url: str) -> None:
        """Envoy watches nothing of this type any more: it drops any response of it in
        flight unanswered, and holds nothing of it, so everything sent is settled."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        state = conn.state(type_url)
        state.applied = state.last_sent
        state.nack = None
        state.acked_past_nack.clear()

    def nacked(self, conn_id: str, type_url: str, nonce: str, error: str) -> None:
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        state = conn.state(type_url)
        response = conn.nonces.pop((type_url, nonce), state.last_sent)
        conn.seq += 1
        # SotW: every response is the whole set, so a later ACKed one holds everything.
        # Delta: only responses sent after the NACK re-send what was refused.
        clear_after = conn.seq if conn.delta else response
        state.nack = _Nack(response, clear_after, error.strip())

    # --- the report ---

    def report(self, ref: str | None = None) -> dict[str, Any] | None:
        """Every resource's status (or one's; None when Pilot holds no such resource)."""
        if ref is not None:
            held = self._current.get(ref)
            if held is None:
                return None
            refs = {ref: held}
        else:
            refs = self._current
        oldest = self._carriers[0].version if self._carriers else self.version
        return {
            "snapshot": self.version,
            "window": {"carriers": len(self._carriers), "oldest": oldest},
            "resources": {r: self._resource(rev, v) for r, (rev, v) in sorted(refs.items())},
        }

    def _resource(self, revision: int, version: int) -> dict[str, Any]:
        out: dict[str, Any] = {"revision": revision, "snapshot": version}
        carrier = self._by_version.get(version)
        if carrier is None:
            # Out of the window: who was affected is forgotten; a proxy that applied
            # everything it was sent has this revision too, the others are unknown.
            conns = self._conns.values()
            out |= {
                "affected": None,
                "acked": sorted({c.proxy for c in conns if c.synced()}),
                "nacked": [],
                "pending": [],
                "unknown": sorted({c.proxy for c in conns if not c.synced()}),
            }
            return out
        acked: set[str] = set()
        pending: set[str] = set()
        nacked: list[dict[str, str]] = []
        for conn_id, sent in carrier.affected.items():
            conn = self._conns[conn_id]
            state, refusals = _verdict(conn, sent)
            if state == "nacked":
                nacked += [{"proxy": conn.proxy, **r} for r in refusals]
            elif state == "pending":
                pending.add(conn.proxy)
            else:
                acked.add(conn.proxy)
        out |= {
            "affected": len(carrier.affected),
            "acked": sorted(acked),
            "nacked": sorted(nacked, key=lambda n: (n["proxy"], n["type"])),
            "pending": sorted(pending),
            "unknown": [],
        }
        return out


def _verdict(conn: _Conn, sent: dict[str, int]) -> tuple[str, list[dict[str, str]]]:
    """acked, nacked (with each refusal) or pending: how the responses `sent` fared."""
    refusals: list[dict[str, str]] = []
    waiting = False
    for type_url, response in sent.items():
        state = conn.types.get(type_url) or _TypeState()
        if state.applied >= response or response in state.acked_past_nack:
            continue
        if state.nack is not None and state.nack.response >= response:
            refusals.append(
                {"type": typeurls.SHORT.get(type_url, type_url), "error": state.nack.error}
            )
        else:
            waiting = True
    if refusals:
        return "nacked", refusals
    return ("pending" if waiting else "acked"), []


def _revision(resource: Resource) -> int:
    version = resource.resource_version
    return int(version) if version is not None and version.isdigit() else 0


def answer(status: ConfigStatus, resource: str | None) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of ``GET /debug/config_status[?resource=REF]``."""
    if resource is None:
        return 200, status.report() or {}
    parts = resource.split("/")
    if not 2 <= len(parts) <= 3 or not all(parts):
        return 400, {
            "error": f"resource {resource[:200]!r} is not KIND/NAMESPACE/NAME (or KIND/NAME)"
        }
    found = status.report(resource)
    if found is None:
        return 404, {
            "error": f"Pilot holds no config resource {resource[:200]!r}",
            "snapshot": status.version,
        }
    return 200, found
