"""The destination sidecar's side: inbound listener and filter chain (mTLS mode), then
its HTTP filters in order, as Envoy runs them: the CUSTOM gate and external
authorizer, request authentication (jwt_authn, with the JWT claims the user gives),
then the RBAC filters (audit, DENY, ALLOW), their config discovered over ECDS,
and per-route overrides from the inbound route table.

Pure functions over the destination proxy's config dump.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshctl.explain_jwt import authenticate
from meshctl.explain_match import (
    Json,
    Unsupported,
    cidr_contains,
    header_matches,
    match_domain,
    metadata_matches,
    path_only,
    route_matches,
    string_matches,
    uri_template_matches,
)
from meshctl.explain_route import Request, hcm_of

__all__ = [
    "InboundResult",
    "Peer",
    "evaluate_inbound",
    "inbound_listener",
    "mtls_mode",
    "policy_label",
]

JWT_FILTER = "envoy.filters.http.jwt_authn"
RBAC_NAMESPACE = "envoy.filters.http.rbac"
_POLICY = re.compile(
    r"^(?:istio-ext-authz-(?P<provider>.+?)-)?ns\[(?P<ns>[^\]]*)\]-policy\[(?P<name>[^\]]*)\]-(?:rule\[(?P<rule>\d+)\]|(?P<none>none))$"
)


@dataclass(frozen=True)
class Peer:
    """The caller as the destination sidecar sees the connection."""

    mtls: bool  # the connection is mesh mTLS (the caller's certificate is checked)
    principal: str | None  # the caller's SPIFFE id (its certificate's URI SAN), with mtls
    source_ip: str | None = None
    sni: str = ""


def policy_label(key: str) -> str:
    """An RBAC policy key as the AuthorizationPolicy rule it came from (Pilot's names)."""
    found = _POLICY.match(key)
    if found is None:
        return key
    what = f"AuthorizationPolicy {found['ns']}/{found['name']}"
    if found["none"]:
        what += " (no rules: allows nothing)"
    else:
        what += f" rules[{found['rule']}]"
    if found["provider"]:
        what += f" (CUSTOM, provider {found['provider']})"
    return what


# --- listener and connection ---


def inbound_listener(dump: Json, port: int) -> Json | None:
    """The destination proxy's listener on the port its instance is registered with."""
    for lis in dump.get("lds", []):
        address = lis.get("address", {}).get("socketAddress", {})
        if int(address.get("portValue", 0)) == port and not lis.get("name", "").startswith(
            "outbound_"
        ):
            found: Json = lis
            return found
    return None


def _tls_chain(chain: Json) -> bool:
    return "transportSocket" in chain


def mtls_mode(listener: Json) -> str:
    """STRICT (mTLS only), PERMISSIVE (mTLS or plaintext) or DISABLE (plaintext), as the
    listener's filter chains say."""
    chains = listener.get("filterChains", [])
    secure = [c for c in chains if _tls_chain(c)]
    if secure and len(secure) < len(chains):
        return "PERMISSIVE"
    return "STRICT" if secure else "DISABLE"


def _chain_for(listener: Json, tls: bool) -> Json | None:
    wanted = "tls" if tls else "raw_buffer"
    for chain in listener.get("filterChains", []):
        protocol = chain.get("filterChainMatch", {}).get("transportProtocol")
        if protocol in (None, wanted):
            found: Json = chain
            return found
    return None


def _client_accepted(chain: Json, peer: Peer) -> str | None:
    """Why the chain's TLS refuses the caller's certificate, if it does."""
    config = chain.get("transportSocket", {}).get("typedConfig", {})
    common = config.get("commonTlsContext", {})
    validation = common.get("combinedValidationContext", {}).get(
        "defaultValidationContext"
    ) or common.get("validationContext", {})
    matchers = [m.get("matcher", {}) for m in validation.get("matchTypedSubjectAltNames", [])]
    if not matchers or peer.principal is None:
        return None
    if any(string_matches(m, peer.principal) for m in matchers):
        return None
    return f"the caller's identity {peer.principal} is not one the destination accepts"


# --- RBAC ---


@dataclass
class _Context:
    headers: dict[str, list[str]]
    peer: Peer
    dest_port: int
    metadata: dict[str, Any]
    notes: list[str]

    @property
    def path(self) -> str:
        return path_only((self.headers.get(":path") or ["/"])[0])


def _principal(p: Json, ctx: _Context) -> bool:
    if p.get("any"):
        return True
    if "andIds" in p:
        return all(_principal(i, ctx) for i in p["andIds"].get("ids", []))
    if "orIds" in p:
        return any(_principal(i, ctx) for i in p["orIds"].get("ids", []))
    if "notId" in p:
        return not _principal(p["notId"], ctx)
    if "authenticated" in p:
        if not ctx.peer.mtls or ctx.peer.principal is None:
            return False
        name = p["authenticated"].get("principalName")
        return name is None or string_matches(name, ctx.peer.principal)
    for key in ("directRemoteIp", "sourceIp"):
        if key in p:
            return cidr_contains(p[key], ctx.peer.source_ip)
    if "remoteIp" in p:
        forwarded = ",".join(ctx.headers.get("x-forwarded-for", [])).split(",")[-1].strip()
        return cidr_contains(p["remoteIp"], forwarded or ctx.peer.source_ip)
    if "header" in p:
        return header_matches(p["header"], ctx.headers)
    if "urlPath" in p:
        return string_matches(p["urlPath"].get("path", {}), ctx.path)
    if "metadata" in p:
        return metadata_matches(p["metadata"], ctx.metadata)
    raise Unsupported(f"principal {sorted(p)}")


def _permission(p: Json, ctx: _Context) -> bool:
    if p.get("any"):
        return True
    if "andRules" in p:
        return all(_permission(r, ctx) for r in p["andRules"].get("rules", []))
    if "orRules" in p:
        return any(_permission(r, ctx) for r in p["orRules"].get("rules", []))
    if "notRule" in p:
        return not _permission(p["notRule"], ctx)
    if "header" in p:
        return header_matches(p["header"], ctx.headers)
    if "urlPath" in p:
        return string_matches(p["urlPath"].get("path", {}), ctx.path)
    if "destinationPort" in p:
        return int(p["destinationPort"]) == ctx.dest_port
    if "destinationPortRange" in p:
        rng = p["destinationPortRange"]
        return int(rng.get("start", 0)) <= ctx.dest_port < int(rng.get("end", 0))
    if "destinationIp" in p:
        return cidr_contains(p["destinationIp"], "127.0.0.1")
    if "requestedServerName" in p:
        return string_matches(p["requestedServerName"], ctx.peer.sni)
    if "metadata" in p:
        return metadata_matches(p["metadata"], ctx.metadata)
    if "uriTemplate" in p:
        template = p["uriTemplate"].get("typedConfig", {}).get("pathTemplate", "")
        return uri_template_matches(template, ctx.path)
    raise Unsupported(f"permission {sorted(p)}")


def _matching(rules: Json, ctx: _Context) -> list[str]:
    """The policies of an RBAC rule set that match, in Envoy's order (by name)."""
    out = []
    for key in sorted(rules.get("policies", {})):
        policy = rules["policies"][key]
        try:
            if "condition" in policy or "checkedCondition" in policy:
                raise Unsupported("a CEL condition")
            if any(_permission(p, ctx) for p in policy.get("permissions", [])) and any(
                _principal(p, ctx) for p in policy.get("principals", [])
            ):
                out.append(key)
        except Unsupported as err:
            ctx.notes.append(f"{policy_label(key)}: cannot evaluate {err}; taken as not matching")
    return out


@dataclass
class Step:
    """One filter on the destination's inbound path and what it did."""

    filter: str
    kind: str  # rbac, jwt_authn, ext_authz, router, other
    effect: str  # "pass", "deny", "unauthenticated", "external", "log", "off", "error"
    detail: str = ""
    policies: list[str] = field(default_factory=list)

    def to_dict(self) -> Json:
        return {
            "filter": self.filter,
            "kind": self.kind,
            "effect": self.effect,
            "detail": self.detail,
            "policies": [policy_label(p) for p in self.policies],
        }


def _rbac(name: str, config: Json, ctx: _Context) -> Step:
    action = "ALLOW"
    step = Step(name, "rbac", "pass")
    shadow = config.get("shadowRules")
    if shadow is not None:
        shadow_action = shadow.get("action", "ALLOW")
        matched = _matching(shadow, ctx)
        prefix = config.get("shadowRulesStatPrefix", "")
        meta = ctx.metadata.setdefault(RBAC_NAMESPACE, {})
        denied = bool(matched) if shadow_action == "DENY" else not matched
        if matched:
            meta[f"{prefix}shadow_effective_policy_id"] = matched[0]
        meta[f"{prefix}shadow_engine_result"] = "denied" if denied else "allowed"
        if matched:
            step.detail = f"dry run ({shadow_action}) matches {policy_label(matched[0])}"
            step.policies = matched
    rules = config.get("rules")
    if rules is None:
        if not step.detail:
            step.effect = "off"
            step.detail = "no policy"
        return step
    action = rules.get("action", "ALLOW")
    matched = _matching(rules, ctx)
    step.policies = matched
    if action == "LOG":
        step.effect = "log" if matched else "pass"
        step.detail = (
            f"audited by {policy_label(matched[0])}" if matched else "no audit policy matches"
        )
    elif action == "DENY":
        step.effect = "deny" if matched else "pass"
        step.detail = (
            f"denied by {policy_label(matched[0])}"
            if matched
            else f"no DENY rule matches ({len(rules.get('policies', {}))} checked)"
        )
    elif matched:
        step.detail = f"allowed by {policy_label(matched[0])}"
    else:
        step.effect = "deny"
        count = len(rules.get("policies", {}))
        step.detail = (
            f"no ALLOW rule matches ({count} checked): with an ALLOW policy, only what one "
            "allows passes"
        )
    return step


# --- request authentication (explain_jwt) ---


def _jwt(name: str, config: Json, ctx: _Context, claims: Mapping[str, Any]) -> Step:
    found = authenticate(config, ctx.headers, claims, ctx.notes)
    if found.payload is not None:
        ctx.metadata.setdefault(JWT_FILTER, {})[found.payload[0]] = found.payload[1]
    return Step(name, "jwt_authn", found.effect, found.detail)


def _ext_authz(name: str, config: Json, ctx: _Context) -> Step:
    gate = config.get("filterEnabledMetadata")
    if gate is not None and not metadata_matches(gate, ctx.metadata):
        return Step(name, "ext_authz", "off", "no CUSTOM rule selects this request")
    if "httpService" in config:
        target = config["httpService"].get("serverUri", {}).get("cluster", "?")
    else:
        target = config.get("grpcService", {}).get("envoyGrpc", {}).get("clusterName", "?")
    policy = ctx.metadata.get(RBAC_NAMESPACE, {})
    selected = [v for k, v in policy.items() if k.endswith("shadow_effective_policy_id")]
    return Step(
        name,
        "ext_authz",
        "external",
        f"the external authorizer ({target}) decides"
        + (" (fail open)" if config.get("failureModeAllow") else ""),
        [str(s) for s in selected],
    )


# --- the whole inbound path ---


@dataclass
class InboundResult:
    listener: str
    mode: str = ""
    chain: str = ""  # "mTLS" or "plaintext"
    outcome: str = "allowed"  # allowed, denied, unauthenticated, external, refused, error
    status: int | None = None
    detail: str = ""
    steps: list[Step] = field(default_factory=list)
    route: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> Json:
        return {
            "listener": self.listener,
            "mtls_mode": self.mode,
            "connection": self.chain,
            "outcome": self.outcome,
            "status": self.status,
            "detail": self.detail,
            "filters": [s.to_dict() for s in self.steps],
            "route": self.route,
            "notes": self.notes,
        }


def _route(dump: Json, hcm: Json, headers: dict[str, list[str]]) -> tuple[Json | None, str]:
    table = hcm.get("routeConfig")
    if table is None and "rds" in hcm:
        name = hcm["rds"].get("routeConfigName", "")
        table = next((r for r in dump.get("rds", []) if r.get("name") == name), None)
    if table is None:
        return None, "no inbound route table"
    vhosts = table.get("virtualHosts", [])
    host = (headers.get(":authority") or [""])[0]
    picked = match_domain([(v.get("name", ""), v.get("domains", [])) for v in vhosts], host)
    if picked is None:
        return None, f"no inbound virtual host for {host!r}"
    for route in vhosts[picked[0]].get("routes", []):
        if route_matches(route.get("match", {}), headers)[0]:
            found: Json = route
            return found, route.get("name", "")
    return None, "no inbound route matches"


_Handler = Callable[[str, Json, _Context], Step]


def _connect(listener: Json, peer: Peer, result: InboundResult) -> Json | None:
    """The filter chain the caller's connection lands on, or None (refused, in `result`)."""
    chain = _chain_for(listener, peer.mtls)
    if chain is None or _tls_chain(chain) != peer.mtls:
        result.outcome, result.status = "refused", 503
        result.detail = (
            f"the destination is {result.mode} and the source sends {result.chain}: the "
            "connection is reset (Envoy answers 503 'upstream connect error')"
        )
        return None
    if peer.mtls and (why := _client_accepted(chain, peer)) is not None:
        result.outcome, result.status, result.detail = "refused", 503, why
        return None
    return chain


def evaluate_inbound(
    dump: Json,
    port: int,
    request: Request,
    peer: Peer,
    claims: Mapping[str, Any],
) -> InboundResult:
    """What the destination sidecar does with the request arriving on `port`."""
    listener = inbound_listener(dump, port)
    if listener is None:
        return InboundResult(
            f"(port {port})",
            outcome="refused",
            status=503,
            detail=f"the destination proxy has no listener on port {port} (refused: 503)",
        )
    result = InboundResult(listener.get("name", ""), mode=mtls_mode(listener))
    result.chain = "mTLS" if peer.mtls else "plaintext"
    chain = _connect(listener, peer, result)
    if chain is None:
        return result
    hcm = hcm_of(chain)
    if hcm is None:
        result.outcome = "allowed"
        result.detail = "the destination relays TCP: no HTTP authorization on this listener"
        return result
    ctx = _Context(request.header_map(), peer, port, {}, result.notes)
    route, result.route = _route(dump, hcm, ctx.headers)
    filters = {f.get("name", ""): f.get("typedConfig", {}) for f in dump.get("ecds", [])}
    if _run_filters(hcm, filters, route, ctx, claims, result):
        _finish(result, route)
    return result


def _filter_config(
    http_filter: Json, filters: Mapping[str, Json], route: Json | None
) -> Json | None:
    """The config a filter runs with for this request: discovered (ECDS) or inline, and
    a route's RBAC override; None when its discovered config never came."""
    name = http_filter.get("name", "")
    if "configDiscovery" in http_filter:
        config = filters.get(name)
        if config is None:
            return None
    else:
        config = http_filter.get("typedConfig", {})
    per_route = (route or {}).get("typedPerFilterConfig", {}).get(name)
    if per_route is not None and str(per_route.get("@type", "")).endswith("RBACPerRoute"):
        rbac = per_route.get("rbac")
        if not rbac:
            return {"@type": "disabled"}
        return {**rbac, "@type": config.get("@type", "")}
    if http_filter.get("disabled") and per_route is None:
        return {"@type": "disabled"}
    return config


def _run_filters(
    hcm: Json,
    filters: Mapping[str, Json],
    route: Json | None,
    ctx: _Context,
    claims: Mapping[str, Any],
    result: InboundResult,
) -> bool:
    """Run the HTTP filters up to the router; False when one of them answered."""
    handlers: dict[str, _Handler] = {
        "RBAC": _rbac,
        "ExtAuthz": _ext_authz,
        "JwtAuthentication": lambda n, c, x: _jwt(n, c, x, claims),
    }
    for http_filter in hcm.get("httpFilters", []):
        name = http_filter.get("name", "")
        config = _filter_config(http_filter, filters, route)
        if config is None:
            result.outcome, result.status = "error", 500
            result.detail = (
                f"filter {name}: its config (ECDS) was not sent; Envoy refuses requests (500)"
            )
            return False
        kind = str(config.get("@type", "")).rsplit(".", 1)[-1]
        if kind == "Router":
            break
        if kind == "disabled":
            result.steps.append(Step(name, "off", "off", "disabled for this route"))
            continue
        handler = handlers.get(kind)
        if handler is None:
            continue
        step = handler(name, config, ctx)
        result.steps.append(step)
        if step.effect in ("deny", "unauthenticated"):
            result.outcome = "denied" if step.effect == "deny" else "unauthenticated"
            result.status = 403 if step.effect == "deny" else 401
            result.detail = step.detail
            return False
        if step.effect == "external" and result.outcome == "allowed":
            result.outcome = "external"
            result.detail = step.detail + "; if it allows, the rest as shown"
    return True


def _finish(result: InboundResult, route: Json | None) -> None:
    """After the filters: the inbound route (its own answer, if it gives one)."""
    if route is None:
        result.outcome, result.status = "no_route", 404
        result.detail = result.route
        return
    if "directResponse" in route:
        result.status = int(route["directResponse"].get("status", 200))
        result.outcome = "direct_response"
        result.detail = f"inbound direct response {result.status}"
        return
    if result.outcome == "allowed":
        allowed_by = next(
            (s for s in result.steps if s.kind == "rbac" and s.detail.startswith("allowed by")),
            None,
        )
        result.detail = allowed_by.detail if allowed_by else "no policy denies it"
