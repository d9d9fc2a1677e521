"""The request, and the source sidecar's side of it: outbound listener, route table,
virtual host, route and what the route does (the cluster it picks, and how the
sidecar connects there, is `explain_upstream`).

Pure functions over one proxy's config dump as Pilot's `/debug/config_dump`
gives it (`{"lds": [...], "rds": [...], "cds": [...], "eds": [...], "ecds": [...]}`,
each resource as proto JSON).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from meshctl.explain_match import (
    Json,
    Unsupported,
    match_domain,
    path_only,
    route_matches,
)

__all__ = [
    "ClusterTarget",
    "ExplainInputError",
    "Request",
    "RouteResult",
    "hcm_of",
    "outbound_listener",
    "parse_claims",
    "parse_request",
    "route_request",
    "with_target_headers",
]

HCM_TYPE = "HttpConnectionManager"
FAULT_FILTER = "envoy.filters.http.fault"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_METHODS = re.compile(r"^[A-Z]+$")


class ExplainInputError(Exception):
    """Bad input to explain: a request line, header, claim or workload it cannot use."""


@dataclass(frozen=True)
class Request:
    method: str
    scheme: str
    authority: str  # the Host header: host[:port]
    path: str  # with the query
    headers: tuple[tuple[str, str], ...] = ()  # lower-case names, as given

    def header_map(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {
            ":method": [self.method],
            ":scheme": [self.scheme],
            ":authority": [self.authority],
            ":path": [self.path],
        }
        for name, value in self.headers:
            out.setdefault(name, []).append(value)
        return out

    def to_dict(self) -> Json:
        return {
            "method": self.method,
            "url": f"{self.scheme}://{self.authority}{self.path}",
            "headers": [f"{k}: {v}" for k, v in self.headers],
        }


def parse_request(line: str, headers: Sequence[str] = ()) -> Request:
    """'[METHOD] http://host[:port]/path?query' and 'Name: value' headers. A Host
    header overrides the URL's authority (as it would for the app's request)."""
    parts = line.split()
    if not parts or len(parts) > 2:
        raise ExplainInputError(
            f"request {line!r}: expected 'METHOD http://HOST[:PORT]/PATH' (e.g. 'GET http://reviews/')"
        )
    method, url = ("GET", parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    if not _METHODS.match(method):
        raise ExplainInputError(
            f"request {line!r}: {method!r} is not an HTTP method (GET, POST, ...)"
        )
    try:
        split = urlsplit(url)
        port = split.port
    except ValueError as err:
        raise ExplainInputError(f"request {line!r}: {err}") from None
    if split.scheme != "http":
        raise ExplainInputError(
            f"request {line!r}: the URL must be http://HOST/...: the sidecar's outbound "
            "listener routes plain HTTP (the app sends https:// as a TCP tunnel)"
        )
    if not split.hostname or split.username or split.password:
        raise ExplainInputError(f"request {line!r}: the URL has no host (http://HOST/...)")
    authority = split.hostname + (f":{port}" if port is not None else "")
    path = (split.path or "/") + (f"?{split.query}" if split.query else "")
    out: list[tuple[str, str]] = []
    for header in headers:
        name, sep, value = header.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise ExplainInputError(f"header {header!r}: expected 'Name: value'")
        if name.lower() == "host":
            authority = value.strip()
            continue
        out.append((name.lower(), value.strip()))
    if not authority:
        raise ExplainInputError("the Host header is empty")
    return Request(method, "http", authority, path, tuple(out))


def parse_claims(items: Sequence[str]) -> dict[str, Any]:
    """`--claim KEY=VALUE` (repeat a key for a list; `a.b=v` is the nested claim
    b in a, as Istio's request.auth.claims[a][b])."""
    claims: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ExplainInputError(f"claim {item!r}: expected KEY=VALUE (KEY may be a.b)")
        *parents, leaf = key.split(".")
        node = claims
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ExplainInputError(f"claim {item!r}: {part!r} is already a value")
            node = child
        if leaf not in node:
            node[leaf] = value
        elif isinstance(node[leaf], list):
            node[leaf].append(value)
        elif isinstance(node[leaf], str):
            node[leaf] = [node[leaf], value]
        else:
            raise ExplainInputError(f"claim {item!r}: {leaf!r} is already an object")
    return claims


# --- the dump ---


def _typed(filter_or_chain: Json) -> Json:
    config = filter_or_chain.get("typedConfig")
    return config if isinstance(config, dict) else {}


def hcm_of(chain: Json) -> Json | None:
    """The HTTP connection manager of a filter chain, if it has one."""
    for network_filter in chain.get("filters", []):
        config = _typed(network_filter)
        if config.get("@type", "").endswith(HCM_TYPE):
            return config
    return None


def _port(listener: Json) -> int:
    return int(listener.get("address", {}).get("socketAddress", {}).get("portValue", 0))


def outbound_listener(dump: Json, name: str | None = None) -> Json:
    """The listener the app sends HTTP to: `name`, else the sidecar's outbound listener
    (`outbound_<address>_<port>`, the one used as http_proxy)."""
    listeners: list[Json] = dump.get("lds", [])
    if name is not None:
        found = next((lis for lis in listeners if lis.get("name") == name), None)
        if found is None:
            known = ", ".join(sorted(lis.get("name", "") for lis in listeners)) or "none"
            raise ExplainInputError(f"no listener {name!r} on the source proxy (it has: {known})")
        return found
    for lis in listeners:
        if lis.get("name", "").startswith("outbound_") and any(
            hcm_of(c) is not None for c in lis.get("filterChains", [])
        ):
            return lis
    raise ExplainInputError(
        "the source proxy has no outbound HTTP listener (a gateway, or a sidecar "
        "bootstrapped without --outbound-port): explain starts from a sidecar's app"
    )


# --- the route ---


@dataclass
class ClusterTarget:
    """One cluster a route sends to, with its share of the requests."""

    cluster: str
    weight: int  # percent of requests, rounded
    request_headers_to_add: list[Json] = field(default_factory=list)
    request_headers_to_remove: list[str] = field(default_factory=list)

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """(direction, port, subset, host) of an Istio-style cluster name."""
        bits = self.cluster.split("|")
        if len(bits) == 4:
            return bits[0], bits[1], bits[2], bits[3]
        return "", "", "", self.cluster


@dataclass
class RouteResult:
    listener: str
    route_config: str = ""
    virtual_host: str = ""
    domain: str = ""
    route_name: str = ""
    route_index: int = -1
    matched_on: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # routes before it and why they missed
    # "route", "redirect", "direct_response", "no_route", "no_virtual_host", "error"
    action: str = "error"
    targets: list[ClusterTarget] = field(default_factory=list)
    status: int | None = None  # what the source sidecar answers itself, if it does
    detail: str = ""
    timeout: str = ""
    retries: Json = field(default_factory=dict)
    fault: Json = field(default_factory=dict)
    mirrors: list[Json] = field(default_factory=list)
    rewrite: Json = field(default_factory=dict)
    headers: Json = field(default_factory=dict)
    hash_policy: list[str] = field(default_factory=list)
    cors: bool = False
    upstream_request: Request | None = None  # the request as the destination sees it

    def to_dict(self) -> Json:
        out: Json = {
            "listener": self.listener,
            "route_config": self.route_config,
            "virtual_host": self.virtual_host,
            "domain": self.domain,
            "route": self.route_name,
            "route_index": self.route_index,
            "matched_on": self.matched_on,
            "skipped": self.skipped,
            "action": self.action,
            "status": self.status,
            "detail": self.detail,
        }
        if self.action == "route":
            out.update(
                targets=[
                    {"cluster": t.cluster, "subset": t.parts[2], "weight": t.weight}
                    for t in self.targets
                ],
                timeout=self.timeout,
                retries=self.retries,
                fault=self.fault,
                mirrors=self.mirrors,
                rewrite=self.rewrite,
                headers=self.headers,
                hash_policy=self.hash_policy,
                cors=self.cors,
            )
        return out


def _fraction(value: Json | None) -> float:
    """A FractionalPercent as a percentage (Envoy's default denominator is HUNDRED)."""
    if not value:
        return 0.0
    scale = {"HUNDRED": 1.0, "TEN_THOUSAND": 100.0, "MILLION": 10_000.0}
    return float(value.get("numerator", 0)) / scale.get(value.get("denominator", "HUNDRED"), 1.0)


def _fault(route: Json, hcm: Json) -> Json:
    """The fault in force on this route: its per-route config overrides the filter's."""
    if not any(f.get("name") == FAULT_FILTER for f in hcm.get("httpFilters", [])):
        return {}
    per_route = route.get("typedPerFilterConfig", {}).get(FAULT_FILTER)
    config = (
        per_route
        if per_route is not None
        else next(_typed(f) for f in hcm["httpFilters"] if f.get("name") == FAULT_FILTER)
    )
    out: Json = {}
    abort = config.get("abort")
    if abort:
        what: Json = {"percent": _fraction(abort.get("percentage") or {"numerator": 100})}
        if "httpStatus" in abort:
            what["http_status"] = int(abort["httpStatus"])
        elif "grpcStatus" in abort:
            what["grpc_status"] = int(abort["grpcStatus"])
        else:
            what["from_header"] = True
        out["abort"] = what
    delay = config.get("delay")
    if delay:
        out["delay"] = {
            "fixed": delay.get("fixedDelay", "header"),
            "percent": _fraction(delay.get("percentage") or {"numerator": 100}),
        }
    return out


def _retries(policy: Json | None) -> Json:
    if not policy:
        return {}
    out: Json = {
        "retry_on": policy.get("retryOn", ""),
        "attempts": int(policy.get("numRetries", 1)),
    }
    if "perTryTimeout" in policy:
        out["per_try_timeout"] = policy["perTryTimeout"]
    if policy.get("retriableStatusCodes"):
        out["status_codes"] = [int(c) for c in policy["retriableStatusCodes"]]
    if policy.get("retryHostPredicate"):
        out["other_host"] = True
    return out


def _header_ops(*levels: Json) -> Json:
    """Request/response header additions and removals, route over vhost over table."""
    adds: list[str] = []
    removes: list[str] = []
    response: list[str] = []
    for level in levels:
        for option in level.get("requestHeadersToAdd", []):
            header = option.get("header", {})
            adds.append(f"{header.get('key', '')}: {header.get('value', '')}")
        removes.extend(level.get("requestHeadersToRemove", []))
        for option in level.get("responseHeadersToAdd", []):
            header = option.get("header", {})
            response.append(f"{header.get('key', '')}: {header.get('value', '')}")
        response.extend(f"-{h}" for h in level.get("responseHeadersToRemove", []))
    out: Json = {}
    if adds:
        out["request_add"] = adds
    if removes:
        out["request_remove"] = removes
    if response:
        out["response"] = response
    return out


def _apply_headers(headers: dict[str, list[str]], *levels: Json) -> None:
    """Envoy's order: the most specific level last (route, then vhost, then table, unless
    most_specific_header_mutations_wins; Pilot sets headers on routes only)."""
    for level in levels:
        for name in level.get("requestHeadersToRemove", []):
            headers.pop(name.lower(), None)
        for option in level.get("requestHeadersToAdd", []):
            header = option.get("header", {})
            name = str(header.get("key", "")).lower()
            value = str(header.get("value", ""))
            action = option.get("appendAction", "APPEND_IF_EXISTS_OR_ADD")
            if option.get("append") is False:
                action = "OVERWRITE_IF_EXISTS_OR_ADD"
            if action == "OVERWRITE_IF_EXISTS_OR_ADD":
                headers[name] = [value]
            elif action == "ADD_IF_ABSENT":
                headers.setdefault(name, [value])
            elif action == "OVERWRITE_IF_EXISTS":
                if name in headers:
                    headers[name] = [value]
            else:
                headers.setdefault(name, []).append(value)


def _rewritten(request: Request, route: Json, action: Json) -> tuple[Request, Json]:
    """The request after the route's path and host rewrites (what the destination sees)."""
    path = request.path
    rewrite: Json = {}
    prefix = route.get("match", {}).get("prefix")
    if "prefixRewrite" in action and prefix is not None:
        path = action["prefixRewrite"] + path[len(prefix) :]
        rewrite["path"] = path
    elif "regexRewrite" in action:
        pattern = action["regexRewrite"].get("pattern", {}).get("regex", "")
        substitution = action["regexRewrite"].get("substitution", "")
        bare, sep, query = path.partition("?")
        try:
            bare = re.sub(pattern, substitution.replace("\\", "\\\\"), bare)
        except re.error as err:
            raise Unsupported(f"regex rewrite {pattern!r}: {err}") from err
        path = bare + sep + query
        rewrite["path"] = path
    authority = request.authority
    if "hostRewriteLiteral" in action:
        authority = action["hostRewriteLiteral"]
        rewrite["host"] = authority
    elif action.get("autoHostRewrite"):
        rewrite["host"] = "(the endpoint's hostname)"
    return Request(request.method, request.scheme, authority, path, request.headers), rewrite


def _targets(action: Json) -> list[ClusterTarget]:
    if "cluster" in action:
        return [ClusterTarget(action["cluster"], 100)]
    if "weightedClusters" in action:
        clusters = action["weightedClusters"].get("clusters", [])
        total = sum(int(c.get("weight", 0)) for c in clusters) or 1
        return [
            ClusterTarget(
                c.get("name", ""),
                round(100 * int(c.get("weight", 0)) / total),
                c.get("requestHeadersToAdd", []),
                c.get("requestHeadersToRemove", []),
            )
            for c in clusters
            if int(c.get("weight", 0)) > 0
        ]
    if "clusterHeader" in action:
        raise Unsupported(f"a cluster named by request header {action['clusterHeader']!r}")
    raise Unsupported(f"route action {sorted(action)}")


def _redirect(request: Request, redirect: Json) -> tuple[int, str]:
    codes = {
        "MOVED_PERMANENTLY": 301,
        "FOUND": 302,
        "SEE_OTHER": 303,
        "TEMPORARY_REDIRECT": 307,
        "PERMANENT_REDIRECT": 308,
    }
    status = codes.get(redirect.get("responseCode", "MOVED_PERMANENTLY"), 301)
    scheme = redirect.get("schemeRedirect", "https" if redirect.get("httpsRedirect") else "http")
    host = redirect.get("hostRedirect", request.authority.split(":")[0])
    port = redirect.get("portRedirect")
    path = redirect.get("pathRedirect") or redirect.get("prefixRewrite") or path_only(request.path)
    location = f"{scheme}://{host}{f':{port}' if port else ''}{path}"
    return status, location


def route_request(dump: Json, request: Request, listener_name: str | None = None) -> RouteResult:
    """Follow the request through the source sidecar's outbound listener as Envoy would."""
    listener = outbound_listener(dump, listener_name)
    result = RouteResult(listener=listener.get("name", ""))
    chains = [c for c in listener.get("filterChains", []) if hcm_of(c) is not None]
    hcm = hcm_of(chains[0]) if chains else None
    if hcm is None:
        result.detail = "the listener has no HTTP connection manager"
        return result
    if "rds" in hcm:
        result.route_config = hcm["rds"].get("routeConfigName", "")
        table = next((r for r in dump.get("rds", []) if r.get("name") == result.route_config), None)
    else:
        table = hcm.get("routeConfig")
        result.route_config = table.get("name", "(inline)") if table else ""
    if table is None:
        result.status = 404
        result.detail = f"route table {result.route_config!r} was not sent to the proxy (404)"
        result.action = "no_route"
        return result
    vhosts = table.get("virtualHosts", [])
    picked = match_domain(
        [(v.get("name", ""), v.get("domains", [])) for v in vhosts], request.authority
    )
    if picked is None:
        result.action = "no_virtual_host"
        result.status = 404
        result.detail = (
            f"no virtual host of {result.route_config!r} serves the host {request.authority!r} "
            "(Envoy answers 404): no service or ServiceEntry of that name is visible to the source"
        )
        return result
    vhost = vhosts[picked[0]]
    result.virtual_host, result.domain = vhost.get("name", ""), picked[1]
    headers = request.header_map()
    for index, route in enumerate(vhost.get("routes", [])):
        matched, why = route_matches(route.get("match", {}), headers)
        name = route.get("name", f"#{index}")
        if not matched:
            result.skipped.append(f"{name}: {why[-1]}")
            continue
        result.route_name, result.route_index, result.matched_on = name, index, why
        _action(result, request, route, vhost, table, hcm)
        return result
    result.action = "no_route"
    result.status = 404
    result.detail = f"no route of virtual host {result.virtual_host!r} matches (Envoy answers 404)"
    return result


def _action(
    result: RouteResult, request: Request, route: Json, vhost: Json, table: Json, hcm: Json
) -> None:
    if "redirect" in route:
        result.action = "redirect"
        result.status, location = _redirect(request, route["redirect"])
        result.detail = f"redirect {result.status} to {location}"
        return
    if "directResponse" in route:
        direct = route["directResponse"]
        result.action = "direct_response"
        result.status = int(direct.get("status", 200))
        body = direct.get("body", {}).get("inlineString", "")
        result.detail = f"direct response {result.status}" + (f": {body.strip()!r}" if body else "")
        return
    action = route.get("route")
    if action is None:
        raise Unsupported(f"route {result.route_name!r} has no action")
    result.action = "route"
    result.targets = _targets(action)
    result.timeout = action.get("timeout", "15s (Envoy's default)")
    if result.timeout in ("0s", "0"):
        result.timeout = "none"
    result.retries = _retries(action.get("retryPolicy") or vhost.get("retryPolicy"))
    result.fault = _fault(route, hcm)
    result.mirrors = [
        {
            "cluster": m.get("cluster", ""),
            "percent": _fraction(m.get("runtimeFraction", {}).get("defaultValue"))
            if "runtimeFraction" in m
            else 100.0,
        }
        for m in action.get("requestMirrorPolicies", [])
    ]
    result.hash_policy = [
        next(iter(sorted(p.keys() - {"terminal"})), "?") for p in action.get("hashPolicy", [])
    ]
    result.cors = "envoy.filters.http.cors" in route.get("typedPerFilterConfig", {})
    upstream_request, result.rewrite = _rewritten(request, route, action)
    headers = upstream_request.header_map()
    _apply_headers(headers, route, vhost, table)
    result.headers = _header_ops(route, vhost, table)
    result.upstream_request = _from_headers(upstream_request, headers)


def _from_headers(base: Request, headers: Mapping[str, list[str]]) -> Request:
    plain = tuple((k, v) for k, values in headers.items() if not k.startswith(":") for v in values)
    return Request(base.method, base.scheme, base.authority, base.path, plain)


def with_target_headers(request: Request, target: ClusterTarget) -> Request:
    """The request as one weighted cluster's destination gets it (its own header edits)."""
    if not target.request_headers_to_add and not target.request_headers_to_remove:
        return request
    headers = request.header_map()
    _apply_headers(
        headers,
        {
            "requestHeadersToAdd": target.request_headers_to_add,
            "requestHeadersToRemove": target.request_headers_to_remove,
        },
    )
    return _from_headers(request, headers)
