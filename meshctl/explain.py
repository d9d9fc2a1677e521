"""meshctl explain: what the mesh does with one request, read from the config the
proxies actually hold (as Pilot sent it: `/debug/syncz` and `/debug/config_dump`).

    meshctl explain --from productpage 'GET http://reviews/api?x=1' -H 'end-user: jason'

Source sidecar (`explain_route`): outbound listener -> route table -> virtual host
-> route -> cluster(s) with retries, timeout, fault, mirrors, header edits, then
the TLS it uses to each endpoint. Destination sidecar (`explain_authz`): inbound
listener, mTLS mode, then its HTTP filters in Envoy's order with the JWT claims
given (`--claim`). Every stage is evaluated as Envoy would, not as the Istio
config says it should be.

Exit status: 0 the request would be routed and allowed; 1 it would not (denied,
refused, no route, an error status from the proxy, or an external authorizer
decides); 2 explain cannot answer (bad input, unknown workload, no Pilot).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshctl.explain_authz import InboundResult, Peer, evaluate_inbound, inbound_listener
from meshctl.explain_match import Json, Unsupported
from meshctl.explain_route import (
    ClusterTarget,
    ExplainInputError,
    Request,
    RouteResult,
    parse_claims,
    parse_request,
    route_request,
    with_target_headers,
)
from meshctl.explain_upstream import Upstream, has_mesh_identity, own_identities, upstream

__all__ = ["ExplainError", "Pilots", "Report", "cmd_explain", "explain", "render"]

_MAX_ENDPOINTS = 4  # destination endpoints checked per cluster
_MESH_SUFFIX = ".svc.cluster.local"


class ExplainError(Exception):
    """explain cannot answer (exit 2): the message says why."""


# (host, port, path) -> parsed JSON; raises ExplainError, or LookupError for a 404.
Fetch = Callable[[str, int, str], Any]


def http_fetch(host: str, port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise LookupError(path) from err
        raise ExplainError(f"pilot at {host}:{port} answered {err.code} to {path}") from err
    except (urllib.error.URLError, OSError) as err:
        raise ExplainError(f"pilot at {host}:{port}: {getattr(err, 'reason', err)}") from err
    except ValueError as err:
        raise ExplainError(f"pilot at {host}:{port}: {path} is not JSON") from err


class Pilots:
    """Every Pilot replica's view: proxies are connected to one of them each."""

    def __init__(self, addrs: Sequence[tuple[str, int]], fetch: Fetch | None = None) -> None:
        self._addrs = list(addrs)
        self._fetch = fetch or http_fetch
        self._dumps: dict[str, Json] = {}
        self._proxies: list[Json] | None = None

    def proxies(self) -> list[Json]:
        """The connected proxies of all replicas (each tagged with its Pilot)."""
        if self._proxies is not None:
            return self._proxies
        found: dict[str, Json] = {}
        errors = []
        for index, (host, port) in enumerate(self._addrs):
            try:
                body = self._fetch(host, port, "/debug/syncz")
            except (ExplainError, LookupError) as err:
                errors.append(str(err))
                continue
            for proxy in body.get("proxies", []) if isinstance(body, dict) else []:
                found.setdefault(proxy.get("proxy", ""), {**proxy, "_pilot": index})
        if errors and len(errors) == len(self._addrs):
            raise ExplainError("; ".join(errors))
        self._proxies = sorted(found.values(), key=lambda p: str(p.get("proxy", "")))
        return self._proxies

    def dump(self, proxy: Json) -> Json:
        """What Pilot sends the proxy now; asks its own Pilot first, then the others."""
        proxy_id = str(proxy.get("proxy", ""))
        if proxy_id in self._dumps:
            return self._dumps[proxy_id]
        first = int(proxy.get("_pilot", 0))
        order = [first, *(i for i in range(len(self._addrs)) if i != first)]
        path = f"/debug/config_dump?proxy={urllib.parse.quote(proxy_id)}"
        for index in order:
            host, port = self._addrs[index]
            try:
                dump = self._fetch(host, port, path)
            except LookupError:
                continue
            if isinstance(dump, dict):
                self._dumps[proxy_id] = dump
                return dump
        raise ExplainError(f"no Pilot has proxy {proxy_id!r} connected any more")


def resolve_source(ref: str, proxies: Sequence[Json]) -> tuple[Json, list[str]]:
    """A proxy id, or SERVICE[.NAMESPACE] (one connected proxy of it, the first by id)."""
    exact = [p for p in proxies if p.get("proxy") == ref]
    if exact:
        return exact[0], []
    service, _, namespace = ref.partition(".")
    found = [
        p
        for p in proxies
        if p.get("service") == service and (not namespace or p.get("namespace") == namespace)
    ]
    namespaces = sorted({str(p.get("namespace")) for p in found})
    if len(namespaces) > 1:
        raise ExplainInputError(
            f"--from {ref!r}: service {service!r} runs in namespaces {', '.join(namespaces)}; "
            f"name one ({service}.{namespaces[0]})"
        )
    if not found:
        known = sorted({f"{p.get('service')}.{p.get('namespace')}" for p in proxies})
        raise ExplainInputError(
            f"--from {ref!r}: no connected proxy or service of that name "
            f"(connected: {', '.join(known) or 'none'})"
        )
    notes = []
    if len(found) > 1:
        notes.append(
            f"{ref} has {len(found)} connected proxies; explained from {found[0]['proxy']}"
        )
    return found[0], notes


def _service_of(host: str) -> tuple[str, str] | None:
    """(service, namespace) of a catalog service's mesh host name."""
    if not host.endswith(_MESH_SUFFIX):
        return None
    name, _, namespace = host.removesuffix(_MESH_SUFFIX).partition(".")
    return (name, namespace) if name and namespace and "." not in namespace else None


def _peer_ip(peer: str) -> str | None:
    """'ipv4:127.0.0.1:5555' / 'ipv6:[::1]:5555' (gRPC's peer form) -> the address."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0] or None
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]") or None
    return None


@dataclass
class EndpointCheck:
    endpoint: str
    proxy: str  # the destination sidecar's id ("" when none is connected)
    tls: str
    sans: list[str]
    inbound: InboundResult | None

    @property
    def outcome(self) -> str:
        return self.inbound.outcome if self.inbound is not None else "allowed"

    @property
    def status(self) -> int | None:
        return self.inbound.status if self.inbound is not None else None

    def to_dict(self) -> Json:
        return {
            "endpoint": self.endpoint,
            "proxy": self.proxy,
            "tls": self.tls,
            "sans": self.sans,
            "inbound": self.inbound.to_dict() if self.inbound is not None else None,
            "outcome": self.outcome,
        }


@dataclass
class Destination:
    target: ClusterTarget
    upstream: Upstream
    service: str = ""
    checks: list[EndpointCheck] = field(default_factory=list)
    outcome: str = "allowed"
    status: int | None = None
    detail: str = ""

    def to_dict(self) -> Json:
        return {
            "cluster": self.target.cluster,
            "subset": self.target.parts[2],
            "weight": self.target.weight,
            "service": self.service,
            "upstream": self.upstream.to_dict(),
            "endpoints": [c.to_dict() for c in self.checks],
            "outcome": self.outcome,
            "status": self.status,
            "detail": self.detail,
        }


@dataclass
class Report:
    request: Request
    source: Json
    principal: str | None
    route: RouteResult
    identity: bool = False  # the source has a mesh identity (originates mTLS)
    destinations: list[Destination] = field(default_factory=list)
    outcome: str = "allowed"
    status: int | None = None
    detail: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome in ("allowed", "redirect") else 1

    def to_dict(self) -> Json:
        return {
            "request": self.request.to_dict(),
            "source": {
                "proxy": self.source.get("proxy"),
                "service": self.source.get("service"),
                "namespace": self.source.get("namespace"),
                "principal": self.principal,
                "mesh_identity": self.identity,
            },
            "route": self.route.to_dict(),
            "destinations": [d.to_dict() for d in self.destinations],
            "verdict": {"outcome": self.outcome, "status": self.status, "detail": self.detail},
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Options:
    listener: str | None = None
    source_principal: str | None = None
    source_ip: str | None = None


def _sync_notes(proxies: Sequence[Json], ids: set[str]) -> list[str]:
    """Proxies explain read whose Envoy has not applied (ACKed) what Pilot would send now:
    the wire may still follow their older config."""
    from meshctl.status_cmds import sync_state

    notes = []
    for proxy in proxies:
        if proxy.get("proxy") not in ids:
            continue
        for kind, watch in sorted((proxy.get("types") or {}).items()):
            state = sync_state(watch)
            if state.startswith("STALE"):
                notes.append(
                    f"{proxy['proxy']}: {kind} {state}: Envoy may still run older config "
                    "than explained here"
                )
    return notes


def _source_identity(
    dump: Json, source: Json, options: Options, notes: list[str]
) -> tuple[bool, str | None]:
    """(has a mesh identity, its SPIFFE id if known)."""
    if options.source_principal:
        return True, options.source_principal
    if not has_mesh_identity(dump):
        return False, None
    service, namespace = str(source.get("service", "")), str(source.get("namespace", ""))
    if source.get("service_account"):  # a Pilot whose syncz says it
        ids = own_identities(dump, service, namespace)
        trust = ids[0].split("/")[2] if ids else "cluster.local"
        return True, f"spiffe://{trust}/ns/{namespace}/sa/{source['service_account']}"
    ids = own_identities(dump, service, namespace)
    if not ids:
        notes.append(
            f"the source's identity is unknown (no cluster of {service}.{namespace} names it): "
            "rules on principals, namespaces or service accounts see none; "
            "give it with --source-principal"
        )
        return True, None
    if len(ids) > 1:
        notes.append(
            f"{service}.{namespace} instances have identities {', '.join(ids)}; "
            f"assumed {ids[0]} (--source-principal to choose)"
        )
    return True, ids[0]


def _destination(
    pilots: Pilots,
    proxies: Sequence[Json],
    src_dump: Json,
    route: RouteResult,
    target: ClusterTarget,
    peer: Peer,
    claims: dict[str, Any],
) -> Destination:
    up = upstream(src_dump, target.cluster)
    dest = Destination(target, up)
    if up.status is not None:
        dest.outcome, dest.status, dest.detail = "error", up.status, up.detail
        return dest
    service = _service_of(target.parts[3])
    dest.service = f"{service[0]}.{service[1]}" if service else target.parts[3]
    candidates = [
        p
        for p in proxies
        if service is not None and (p.get("service"), p.get("namespace")) == service
    ]
    assert route.upstream_request is not None
    request = with_target_headers(route.upstream_request, target)
    for endpoint in [e for e in up.endpoints if e.healthy][:_MAX_ENDPOINTS]:
        owner = next(
            (p for p in candidates if inbound_listener(pilots.dump(p), endpoint.port) is not None),
            None,
        )
        address = f"{endpoint.address}:{endpoint.port}"
        if owner is None:
            dest.checks.append(EndpointCheck(address, "", endpoint.tls, endpoint.sans, None))
            continue
        tls_peer = Peer(
            mtls=endpoint.mtls and peer.mtls,
            principal=peer.principal if endpoint.mtls and peer.mtls else None,
            source_ip=peer.source_ip,
            sni=endpoint.sni,
        )
        inbound = evaluate_inbound(pilots.dump(owner), endpoint.port, request, tls_peer, claims)
        dest.checks.append(
            EndpointCheck(address, str(owner.get("proxy")), endpoint.tls, endpoint.sans, inbound)
        )
    outcomes = {c.outcome for c in dest.checks}
    if len(outcomes) == 1:
        dest.outcome = outcomes.pop()
        first = dest.checks[0]
        dest.status = first.status
        dest.detail = (
            first.inbound.detail
            if first.inbound is not None
            else ("no connected sidecar at the endpoint: nothing checks the request there")
        )
    elif outcomes:
        dest.outcome = "mixed"
        dest.detail = "endpoints differ: " + ", ".join(
            f"{c.endpoint} {c.outcome}" for c in dest.checks
        )
    return dest


def explain(
    pilots: Pilots,
    source_ref: str,
    request: Request,
    claims: dict[str, Any],
    options: Options = Options(),
) -> Report:
    proxies = pilots.proxies()
    source, notes = resolve_source(source_ref, proxies)
    src_dump = pilots.dump(source)
    route = route_request(src_dump, request, options.listener)
    identity, principal = _source_identity(src_dump, source, options, notes)
    report = Report(request, source, principal, route, identity, notes=notes)
    if route.action != "route":
        report.outcome = "redirect" if route.action == "redirect" else route.action
        report.status, report.detail = route.status, route.detail
        if route.action == "direct_response" and route.status is not None and route.status < 400:
            report.outcome = "allowed"
        return report
    abort = route.fault.get("abort")
    if abort and abort.get("percent", 0) >= 100 and "http_status" in abort:
        report.outcome, report.status = "fault", int(abort["http_status"])
        report.detail = f"fault injection aborts every request with {report.status}"
        return report
    source_ip = options.source_ip or _peer_ip(str(source.get("peer", "")))
    peer = Peer(mtls=identity, principal=principal, source_ip=source_ip)
    for target in route.targets:
        report.destinations.append(
            _destination(pilots, proxies, src_dump, route, target, peer, claims)
        )
    outcomes = {d.outcome for d in report.destinations}
    if outcomes == {"allowed"}:
        report.outcome = "allowed"
        report.detail = "; ".join(
            f"{d.target.weight}% to {d.service}"
            + (f" subset {d.target.parts[2]}" if d.target.parts[2] else "")
            + f": {d.detail}"
            for d in report.destinations
        )
    elif len(outcomes) == 1:
        only = report.destinations[0]
        report.outcome, report.status, report.detail = only.outcome, only.status, only.detail
    else:
        report.outcome = "mixed"
        report.detail = "; ".join(
            f"{d.target.weight}% to {d.target.cluster}: {d.outcome}" for d in report.destinations
        )
    used = {str(source.get("proxy"))} | {c.proxy for d in report.destinations for c in d.checks}
    report.notes.extend(_sync_notes(proxies, used))
    if abort:
        report.notes.append(
            f"fault injection aborts {abort['percent']:g}% of requests"
            + (f" with {abort['http_status']}" if "http_status" in abort else "")
        )
    return report


# --- text ---


def _retry_text(retries: Json) -> str:
    if not retries:
        return "none"
    text = f"{retries['attempts']} on {retries['retry_on']}"
    if "per_try_timeout" in retries:
        text += f", {retries['per_try_timeout']} per try"
    if "status_codes" in retries:
        text += f", status {','.join(str(c) for c in retries['status_codes'])}"
    return text


def _fault_text(fault: Json) -> str:
    parts = []
    if "abort" in fault:
        abort = fault["abort"]
        code = abort.get("http_status", abort.get("grpc_status", "from header"))
        parts.append(f"abort {code} for {abort['percent']:g}% of requests")
    if "delay" in fault:
        parts.append(f"delay {fault['delay']['fixed']} for {fault['delay']['percent']:g}%")
    return "; ".join(parts)


def _line(label: str, text: str) -> str:
    return f"{label:<12}{text}"


def _destination_lines(d: Destination) -> list[str]:
    lines = [f"-> {d.target.cluster} ({d.target.weight}%): {d.service}"]
    up = d.upstream
    if not up.found or up.status is not None:
        return [*lines, _line("  upstream", up.detail)]
    lines.append(_line("  tls", f"{up.mode}; {len(up.endpoints)} endpoint(s)"))
    for c in d.checks:
        mtls = "yes" if c.tls == "mesh mTLS" else "no"
        sans = f" ({', '.join(c.sans)})" if c.sans else ""
        lines.append(_line("  endpoint", f"{c.endpoint} mTLS: {mtls}{sans}"))
        inbound = c.inbound
        if inbound is None:
            lines.append(_line("  inbound", "no connected sidecar there: nothing checks it"))
            continue
        lines.append(
            _line(
                "  inbound",
                f"{c.proxy} {inbound.listener}, {inbound.mode or '?'}, connection {inbound.chain}",
            )
        )
        active = [s for s in inbound.steps if s.effect != "off" or s.kind == "off"]
        if not active and inbound.steps:
            lines.append(_line("  filter", "no authentication or authorization policy applies"))
        for step in active:
            lines.append(_line("  filter", f"{step.filter}: {step.effect}, {step.detail}"))
        status = f" {inbound.status}" if inbound.status else ""
        lines.append(_line("  result", f"{inbound.outcome}{status}: {inbound.detail}"))
        lines.extend(_line("  note", note) for note in inbound.notes)
    return lines


def render(report: Report) -> str:
    lines: list[str] = []

    def add(label: str, text: str) -> None:
        lines.append(f"{label:<12}{text}")

    req = report.request
    extra = f"  ({'; '.join(f'{k}: {v}' for k, v in req.headers)})" if req.headers else ""
    add("request", f"{req.method} {req.scheme}://{req.authority}{req.path}{extra}")
    src = report.source
    add(
        "source",
        f"{src.get('proxy')} ({src.get('service')}.{src.get('namespace')}), identity "
        + (report.principal or ("unknown" if report.identity else "none (sends plaintext)")),
    )
    r = report.route
    add("listener", f"{r.listener} -> route table {r.route_config or '?'}")
    if r.virtual_host:
        add("vhost", f"{r.virtual_host} (domain {r.domain!r})")
    for skipped in r.skipped:
        add("", f"skipped {skipped}")
    if r.route_name:
        add("route", f"{r.route_name} [#{r.route_index}]: {', '.join(r.matched_on)}")
    if r.action == "route":
        for t in r.targets:
            subset = f" (subset {t.parts[2]})" if t.parts[2] else ""
            add("cluster", f"{t.cluster}{subset} {t.weight}%")
        add("timeout", r.timeout)
        add("retries", _retry_text(r.retries))
        if r.fault:
            add("fault", _fault_text(r.fault))
        for m in r.mirrors:
            add("mirror", f"{m['cluster']} ({m['percent']:g}%)")
        if r.rewrite:
            add("rewrite", ", ".join(f"{k} {v}" for k, v in r.rewrite.items()))
        for key, values in r.headers.items():
            add("headers", f"{key.replace('_', ' ')}: {', '.join(values)}")
        if r.hash_policy:
            add("hashing", ", ".join(r.hash_policy))
    elif r.detail:
        add("action", r.detail)
    for d in report.destinations:
        lines.extend(_destination_lines(d))
    for note in report.notes:
        add("note", note)
    status = f" ({report.status})" if report.status else ""
    add("verdict", f"{report.outcome.upper()}{status}: {report.detail}")
    return "\n".join(lines) + "\n"


# --- CLI ---


def cmd_explain(args: argparse.Namespace) -> int:
    try:
        request = parse_request(args.request, args.header)
        claims = parse_claims(args.claim)
        pilots = Pilots(args.pilot_http)
        report = explain(
            pilots,
            args.source,
            request,
            claims,
            Options(args.listener, args.source_principal, args.source_ip),
        )
    except (ExplainInputError, ExplainError, Unsupported) as err:
        print(f"meshctl explain: {err}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        sys.stdout.write(render(report))
    return report.exit_code
