"""Plan before apply: what a config change would do to each connected proxy.

`POST /debug/plan` takes the resources Galley validated (canonical documents, and
optionally deletions) and answers, for the proxies connected to this Pilot, the xDS
resources each would gain, lose or change. Both sides are built the way a push builds
them (`MeshSnapshot.build`, `PushContext.build`, the consistency alarm, the generators
Pilot serves with) from the same catalog and config, so the difference is the proposal
and nothing else. Proxies whose change is the same are one group ("200 sidecars of
reviews (default)"); each changed group's planned config is checked by the real Envoy
(`pilot.envoy_check`), once per distinct planned config, not once per proxy.

Request:  {"resources": [document, ...], "deletes": [{"kind", "namespace", "name"}]}
          query: proxy=ID (optional: only that proxy)
Answer:   {"snapshot", "proxies", "unchanged", "groups": [...], "warnings": [...],
           "envoy": {"checked", "accepted", "error"}}
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf import json_format

from api.resources import Resource, check_document
from pilot.envoy_check import EnvoyChecker, Verdict, filters, hcm
from pilot.model import MeshConfig, MeshSnapshot, Proxy
from pilot.xds import typeurls
from pilot.xds.context import PushContext
from pilot.xds.generator import Generator

if TYPE_CHECKING:
    from pilot.app import Pilot

__all__ = [
    "Group",
    "Plan",
    "PlanError",
    "Planner",
    "Proposal",
    "ProxyConfig",
    "build_context",
    "candidate_config",
    "diff_configs",
    "parse_proposal",
    "plan",
    "proxy_config",
]

# A proxy's config: short type name -> resource name -> the resource as JSON.
ProxyConfig = dict[str, dict[str, dict[str, Any]]]
Key = tuple[str, str, str]  # (kind id, namespace, name), as Resource.key

_ORDER = ("cds", "eds", "lds", "rds", "ecds")
EXAMPLES = 5  # proxy ids named per group
MAX_DOCUMENTS = 1_000
# Galley sends at most its own body limit (1 MiB of YAML by default) as canonical JSON.
MAX_BODY = 8 * 1024 * 1024


class PlanError(Exception):
    """A request the plan cannot be made for: `status` and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Proposal:
    """Resources to create or replace, and keys to delete."""

    resources: tuple[Resource, ...] = ()
    deletes: tuple[Key, ...] = ()


def parse_proposal(body: Any) -> Proposal:
    """A request body as a Proposal; every document validated as Galley and Pilot's config
    watch validate it (an invalid one is refused, naming it)."""
    if not isinstance(body, dict):
        raise PlanError(400, "the body must be a JSON object with 'resources'")
    unknown = set(body) - {"resources", "deletes"}
    if unknown:
        raise PlanError(400, f"unknown field(s) in the body: {', '.join(sorted(unknown))}")
    docs = body.get("resources", [])
    deletes = body.get("deletes", [])
    if not isinstance(docs, list) or not isinstance(deletes, list):
        raise PlanError(400, "'resources' and 'deletes' must be lists")
    if len(docs) + len(deletes) > MAX_DOCUMENTS:
        raise PlanError(413, f"more than {MAX_DOCUMENTS} resources in one plan")
    resources: list[Resource] = []
    problems: list[str] = []
    for i, doc in enumerate(docs):
        checked = check_document(doc, f"resources[{i}]")
        if checked.resource is None or checked.errors:
            problems += [f"{checked.where}: {issue}" for issue in checked.errors or checked.issues]
        else:
            resources.append(checked.resource)
    keys: list[Key] = []
    for i, d in enumerate(deletes):
        if not isinstance(d, dict) or not all(
            isinstance(d.get(k), str) for k in ("kind", "namespace", "name")
        ):
            problems.append(f"deletes[{i}]: needs string fields kind, namespace and name")
            continue
        keys.append((d["kind"], d["namespace"], d["name"]))
    if problems:
        raise PlanError(422, "invalid: " + "; ".join(problems))
    return Proposal(tuple(resources), tuple(keys))


def candidate_config(current: Sequence[Resource], proposal: Proposal) -> list[Resource]:
    """The config with the proposal applied, as Galley would store it: a replaced resource
    keeps its age (Consul keeps the key's CreateIndex), a new one is the newest of all, so
    conflicts resolve as they will once it is stored."""
    by_key = {r.key: r for r in current}
    newest = max((r.created for r in current), default=0)
    for key in proposal.deletes:
        by_key.pop(key, None)
    for r in proposal.resources:
        old = by_key.get(r.key)
        if old is not None:
            by_key[r.key] = replace(r, created=old.created, resource_version=old.resource_version)
        else:
            newest += 1
            by_key[r.key] = replace(r, created=newest)
    return sorted(by_key.values(), key=lambda r: r.key)


def build_context(
    snapshot: MeshSnapshot, previous: PushContext | None, namespaces: Iterable[str]
) -> tuple[PushContext, list[str]]:
    """The PushContext a push would serve for `snapshot`, with the consistency alarm run as
    a push runs it (the services involved withheld); and what the alarm said."""
    spaces = set(namespaces)
    ctx = PushContext.build(snapshot, previous)
    notes: list[str] = []
    withheld: set[Any] = set()
    while problems := ctx.consistent(spaces):
        notes += [str(p) for p in problems]
        involved = {k for p in problems for k in p.services} - withheld
        if not involved:
            notes.append("Pilot would refuse this snapshot and keep the config it serves")
            break
        withheld |= involved
        snapshot = snapshot.without(involved, [p.message for p in problems])
        ctx = PushContext.build(snapshot, previous)
    return ctx, notes


def _json(type_url: str, value: bytes) -> dict[str, Any]:
    return json_format.MessageToDict(typeurls.MESSAGES[type_url].FromString(value))


def proxy_config(
    ctx: PushContext,
    proxy: Proxy,
    generators: Mapping[str, Generator],
    decoded: dict[tuple[str, bytes], dict[str, Any]] | None = None,
) -> ProxyConfig:
    """Everything Pilot would send `proxy`, names followed as Envoy follows them: EDS for the
    EDS clusters in CDS, RDS for the route tables the listeners name, ECDS for the filter
    configs they discover. `decoded`: JSON already made of identical bytes (most resources
    are the same before and after, and across proxies), shared; never to be mutated."""
    memo = decoded if decoded is not None else {}

    def as_json(type_url: str, value: bytes) -> dict[str, Any]:
        found = memo.get((type_url, value))
        if found is None:
            found = memo[(type_url, value)] = _json(type_url, value)
        return found

    def generate(type_url: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        gen = generators.get(type_url)
        if gen is None:
            return {}
        found = gen.generate(ctx, proxy, frozenset(names), None)
        return {r.name: as_json(type_url, r.value_bytes) for r in found}

    out: ProxyConfig = {}
    out["cds"] = generate(typeurls.CLUSTER, ())
    eds = [
        c.get("edsClusterConfig", {}).get("serviceName") or name
        for name, c in out["cds"].items()
        if c.get("type") == "EDS"
    ]
    out["eds"] = generate(typeurls.ENDPOINT, eds)
    out["lds"] = generate(typeurls.LISTENER, ())
    network = [f for lis in out["lds"].values() for f in filters(lis)]
    managers = [m for m in map(hcm, network) if m is not None]
    out["rds"] = generate(
        typeurls.ROUTE, {m["rds"]["routeConfigName"] for m in managers if "rds" in m}
    )
    discovered = {
        f["name"] for m in managers for f in m.get("httpFilters", []) if "configDiscovery" in f
    }
    discovered |= {f["name"] for f in network if "configDiscovery" in f}
    out["ecds"] = generate(typeurls.EXTENSION_CONFIG, discovered)
    return out


def _text(resource: Mapping[str, Any] | None) -> list[str]:
    if resource is None:
        return []
    return (json.dumps(resource, indent=2, sort_keys=True) + "\n").splitlines(keepends=True)


def diff_configs(before: ProxyConfig, after: ProxyConfig) -> tuple[dict[str, Any], str]:
    """(per short type: the names added, removed and changed; a unified diff of the JSON)."""
    changes: dict[str, Any] = {}
    chunks: list[str] = []
    for kind in _ORDER:
        old, new = before.get(kind, {}), after.get(kind, {})
        added = sorted(new.keys() - old.keys())
        removed = sorted(old.keys() - new.keys())
        changed = sorted(n for n in old.keys() & new.keys() if old[n] != new[n])
        if not (added or removed or changed):
            continue
        changes[kind] = {"added": added, "removed": removed, "changed": changed}
        for name in sorted({*added, *removed, *changed}):
            chunks.extend(
                difflib.unified_diff(
                    _text(old.get(name)),
                    _text(new.get(name)),
                    f"{kind} {name} (now)" if name in old else "/dev/null",
                    f"{kind} {name} (planned)" if name in new else "/dev/null",
                )
            )
    return changes, "".join(chunks)


@dataclass(slots=True)
class Group:
    """Proxies of one kind and service whose change is the same."""

    kind: str
    service: str
    namespace: str
    changes: dict[str, Any]
    diff: str
    proxies: list[str] = field(default_factory=list)
    # Distinct planned configs within the group (proxies of several shapes), with the SDS
    # files each names: what Envoy checks.
    planned: dict[str, tuple[ProxyConfig, tuple[str, ...]]] = field(default_factory=dict)
    envoy: Verdict | None = None

    @property
    def key(self) -> str:
        text = json.dumps([self.kind, self.service, self.namespace, self.diff])
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        ids = sorted(self.proxies)
        return {
            "key": self.key,
            "kind": self.kind,
            "service": self.service,
            "namespace": self.namespace,
            "count": len(ids),
            "proxies": ids[:EXAMPLES],
            "changes": self.changes,
            "diff": self.diff,
            "envoy": (self.envoy or Verdict(False, True, "not checked")).to_dict(),
        }


@dataclass(slots=True)
class Plan:
    snapshot: int
    proxies: int
    unchanged: int
    groups: list[Group]
    warnings: list[str]


def plan(
    base: MeshSnapshot,
    candidate: MeshSnapshot,
    previous: PushContext | None,
    proxies: Sequence[Proxy],
    generators: Mapping[str, Generator],
) -> Plan:
    """Every proxy's change from `base` to `candidate`, grouped. Pure: no I/O."""
    namespaces = {p.namespace for p in proxies}
    now, base_notes = build_context(base, previous, namespaces)
    then, notes = build_context(candidate, now, namespaces)
    warnings = [f"planned config: {n}" for n in notes if n not in base_notes]
    by_shape: dict[tuple[object, ...], list[Proxy]] = {}
    for p in proxies:
        by_shape.setdefault(p.shape, []).append(p)
    groups: dict[tuple[str, str, str, str], Group] = {}
    unchanged = 0
    decoded: dict[tuple[str, bytes], dict[str, Any]] = {}
    for members in by_shape.values():
        proxy = members[0]  # proxies of one shape get the very same bytes
        planned = proxy_config(then, proxy, generators, decoded)
        changes, text = diff_configs(proxy_config(now, proxy, generators, decoded), planned)
        if not changes:
            unchanged += len(members)
            continue
        key = (proxy.kind, proxy.service, proxy.namespace, text)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(proxy.kind, proxy.service, proxy.namespace, changes, text)
        group.proxies += [p.id for p in members]
        sds = tuple(proxy.sds[1:]) if proxy.sds else ()
        digest = hashlib.blake2b(
            json.dumps([planned, sds], sort_keys=True).encode(), digest_size=16
        ).hexdigest()
        group.planned.setdefault(digest, (planned, sds))
    ordered = sorted(groups.values(), key=lambda g: (-len(g.proxies), g.kind, g.service, g.key))
    return Plan(base.version, len(proxies), unchanged, ordered, warnings)


async def check(groups: Sequence[Group], checker: EnvoyChecker) -> Verdict:
    """Envoy's check of every changed group: one validate per distinct planned config
    (shared across groups), a few at a time. Each group gets its verdict; the answer is
    the first refusal, else whether all were checked."""
    configs: dict[str, tuple[ProxyConfig, tuple[str, ...]]] = {}
    for g in groups:
        configs.update(g.planned)
    digests = list(configs)
    verdicts = await asyncio.gather(
        *(checker.check(_by_type(configs[d][0]), configs[d][1]) for d in digests)
    )
    by_digest = dict(zip(digests, verdicts, strict=True))
    for g in groups:
        mine = [by_digest[d] for d in g.planned]
        g.envoy = next((v for v in mine if not v.accepted), None) or next(
            (v for v in mine if not v.checked), mine[0] if mine else None
        )
    refused = [
        g for g in groups if g.envoy is not None and g.envoy.checked and not g.envoy.accepted
    ]
    if refused:
        g = refused[0]
        return Verdict(True, False, f"{describe(g)}: {g.envoy.error if g.envoy else ''}")
    unchecked = [v for v in verdicts if not v.checked]
    if unchecked:
        return Verdict(False, True, unchecked[0].error)
    if not verdicts:
        return Verdict(False, True, "nothing to check: no proxy's config would change")
    return Verdict(True, True)


def _by_type(config: ProxyConfig) -> dict[str, list[dict[str, Any]]]:
    return {kind: list(resources.values()) for kind, resources in config.items()}


def describe(group: Group | Mapping[str, Any]) -> str:
    """'2 sidecars of reviews (default)'."""
    if isinstance(group, Group):
        group = group.to_dict()
    count, kind = group["count"], group["kind"]
    return f"{count} {kind}{'s' if count != 1 else ''} of {group['service']} ({group['namespace']})"


class Planner:
    """The `/debug/plan` handler: one plan computed at a time (off the event loop), Envoy
    checks a few at a time."""

    def __init__(self, pilot: Pilot, checker: EnvoyChecker | None = None) -> None:
        self._pilot = pilot
        self._checker = checker or EnvoyChecker()
        self._busy = asyncio.Semaphore(1)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(await self._answer(request))
        except PlanError as err:
            return web.json_response({"error": err.message}, status=err.status)

    async def _answer(self, request: web.Request) -> dict[str, Any]:
        raw = bytearray()
        async for chunk in request.content.iter_chunked(65_536):
            raw += chunk
            if len(raw) > MAX_BODY:
                raise PlanError(413, f"body over {MAX_BODY} bytes")
        try:
            body = json.loads(raw)
        except ValueError as err:  # UnicodeDecodeError is one
            raise PlanError(400, f"the body is not JSON: {err}") from err
        proposal = parse_proposal(body)
        pilot = self._pilot
        served = pilot.snapshot
        if served is None:
            raise PlanError(503, "no snapshot yet: Pilot is still reading the catalog and config")
        proxy_id = request.query.get("proxy")
        proxies = [c.proxy for c in pilot.ads.connections.values()]
        if proxy_id is not None:
            proxies = [p for p in proxies if p.id == proxy_id]
            if not proxies:
                raise PlanError(404, f"no connected proxy {proxy_id!r}")
        # The inputs of the next push, read here on the loop; both sides are built from them.
        instances = pilot.registry.instances()
        config = tuple(pilot.config.resources())
        jwks = dict(served.jwks)
        mesh: MeshConfig = served.mesh
        previous = pilot.ads.context
        generators = dict(pilot.ads.generators)

        def compute() -> Plan:
            version = served.version
            base = MeshSnapshot.build(version, instances, config, mesh, jwks)
            planned = candidate_config(config, proposal)
            candidate = MeshSnapshot.build(version, instances, planned, mesh, jwks)
            return plan(base, candidate, previous, proxies, generators)

        async with self._busy:
            result = await asyncio.to_thread(compute)
        verdict = await check(result.groups, self._checker)
        return {
            "snapshot": result.snapshot,
            "proxies": result.proxies,
            "unchanged": result.unchanged,
            "groups": [g.to_dict() for g in result.groups],
            "warnings": result.warnings,
            "envoy": verdict.to_dict(),
        }
