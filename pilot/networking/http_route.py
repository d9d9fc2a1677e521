"""VirtualService HTTP rules -> Envoy routes.

Matches (uri, headers, query params, method, authority, scheme, port,
sourceLabels/sourceNamespace), weighted destinations, rewrite, redirect,
direct response, retries, timeouts, fault injection, mirroring, header
manipulation and CORS. A rule with several matches becomes several routes
with one action (Istio's OR), and rules keep their order (first match wins).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import duration_pb2

from api.checks import GRPC_STATUS_NAMES
from api.networking.virtual_service import (
    CorsPolicy,
    Destination,
    HeaderOperations,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    Percent,
    StringMatch,
    VirtualServiceSpec,
)
from pilot.networking.protos import duration, fraction, pack

__all__ = ["CORS_FILTER", "FAULT_FILTER", "default_route", "http_routes"]

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
# Istio's retry default when a VirtualService sets none.
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}

# (destination host as written, port or None, subset or "") -> Envoy cluster name
ClusterFor = Callable[[str, int | None, str], str]


def _regex(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)


def _string_matcher(m: StringMatch, ignore_case: bool = False) -> string_pb2.StringMatcher:
    if m.exact is not None:
        return string_pb2.StringMatcher(exact=m.exact, ignore_case=ignore_case)
    if m.prefix is not None:
        return string_pb2.StringMatcher(prefix=m.prefix, ignore_case=ignore_case)
    return string_pb2.StringMatcher(safe_regex=_regex(m.regex or ".*"))


def _header(name: str, m: StringMatch | None, invert: bool = False) -> rc.HeaderMatcher:
    matcher = rc.HeaderMatcher(name=name, invert_match=invert)
    if m is None or (m.exact is None and m.prefix is None and m.regex is None):
        matcher.present_match = True
    elif m.regex == "*" and invert:
        matcher.present_match = True
    else:
        matcher.string_match.CopyFrom(_string_matcher(m))
    return matcher


def _route_match(match: HTTPMatchRequest | None) -> rc.RouteMatch:
    out = rc.RouteMatch()
    uri = match.uri if match is not None else None
    ignore_case = bool(match.ignore_uri_case) if match is not None else False
    if uri is None:
        out.prefix = "/"
    elif uri.exact is not None:
        out.path = uri.exact
    elif uri.prefix is not None:
        out.prefix = uri.prefix
    elif uri.regex is not None:
        out.safe_regex.CopyFrom(_regex(uri.regex))
    else:
        out.prefix = "/"
    if ignore_case:
        out.case_sensitive.value = False
    if match is None:
        return out
    for name, m in (match.headers or {}).items():
        out.headers.append(_header(name.lower(), m))
    for name, m in (match.without_headers or {}).items():
        out.headers.append(_header(name.lower(), m, invert=True))
    for pseudo, m in (
        (":method", match.method),
        (":authority", match.authority),
        (":scheme", match.scheme),
    ):
        if m is not None:
            out.headers.append(_header(pseudo, m))
    for name, m in (match.query_params or {}).items():
        qp = rc.QueryParameterMatcher(name=name)
        if m is None or (m.exact is None and m.prefix is None and m.regex is None):
            qp.present_match = True
        else:
            qp.string_match.CopyFrom(_string_matcher(m))
        out.query_parameters.append(qp)
    return out


def _applies(
    match: HTTPMatchRequest | None,
    proxy_labels: Mapping[str, str],
    proxy_namespace: str,
    port: int,
    gateway: str,
) -> bool:
    """Matches decided at config time: port, source labels/namespace, gateways."""
    if match is None:
        return True
    if match.port and match.port != port:
        return False
    if (
        gateway == "mesh"
        and match.source_labels
        and any(proxy_labels.get(k) != v for k, v in match.source_labels.items())
    ):
        return False
    if match.source_namespace and match.source_namespace != proxy_namespace:
        return False
    gateways = list(match.gateways or [])
    return (
        not gateways
        or gateway in gateways
        or (gateway != "mesh" and gateway.split("/")[-1] in gateways)
    )


def _header_options(
    ops: HeaderOperations | None,
) -> tuple[list[base_pb2.HeaderValueOption], list[str]]:
    adds: list[base_pb2.HeaderValueOption] = []
    if ops is None:
        return adds, []
    for key, value in _settable(ops.set).items():
        adds.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=key, value=value),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        )
    for key, value in _settable(ops.add).items():
        adds.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=key, value=value),
                append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
            )
        )
    return adds, [h for h in ops.remove or [] if _modifiable(h)]


def _modifiable(header: str) -> bool:
    """Envoy refuses (NACKs) header operations on pseudo-headers and Host; Istio turns
    a set Host/:authority into a host rewrite instead (`_authority`)."""
    return not header.startswith(":") and header.lower() != "host"


def _settable(values: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (values or {}).items() if _modifiable(k)}


def _authority(ops: HeaderOperations | None) -> str | None:
    """A Host set or added by a rule's request headers: the route's host rewrite."""
    for values in (ops.set, ops.add) if ops is not None else ():
        for key, value in (values or {}).items():
            if key.lower() in (":authority", "host"):
                return value
    return None


def _dest_port(dest: Destination) -> int | None:
    return dest.port.number if dest.port is not None and dest.port.number else None


def _retry(retries: HTTPRetry | None) -> rc.RetryPolicy | None:
    if retries is None:
        return rc.RetryPolicy(
            retry_on=DEFAULT_RETRY_ON,
            num_retries={"value": 2},
            retry_host_predicate=[
                rc.RetryPolicy.RetryHostPredicate(
                    name="envoy.retry_host_predicates.previous_hosts",
                    typed_config=pack(_previous_hosts()),
                )
            ],
            host_selection_retry_max_attempts=5,
        )
    if not retries.attempts:
        return None
    policy = rc.RetryPolicy(
        num_retries={"value": retries.attempts}, retry_on=retries.retry_on or DEFAULT_RETRY_ON
    )
    codes = [int(c) for c in (retries.retry_on or "").split(",") if c.strip().isdigit()]
    if codes:
        policy.retriable_status_codes.extend(codes)
        names = [c for c in policy.retry_on.split(",") if not c.strip().isdigit()]
        policy.retry_on = ",".join(sorted(set(names) | {"retriable-status-codes"}))
    if (t := duration(retries.per_try_timeout)) is not None:
        policy.per_try_timeout.CopyFrom(t)
    if (t := duration(retries.backoff)) is not None:
        policy.retry_back_off.base_interval.CopyFrom(t)
    # Istio's default is to retry on another host; `retryIgnorePreviousHosts: false` allows
    # the same one again.
    if retries.retry_ignore_previous_hosts is not False:
        policy.retry_host_predicate.append(
            rc.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(_previous_hosts()),
            )
        )
    policy.host_selection_retry_max_attempts = 5
    return policy


def _previous_hosts() -> previous_hosts_pb2.PreviousHostsPredicate:
    return previous_hosts_pb2.PreviousHostsPredicate()


def _percent(pct: Percent) -> float:
    """A set percentage's value; `percentage: {}` is 0, as Istio reads it."""
    return pct.value or 0.0


def _fault(fault: HTTPFaultInjection | None) -> fault_pb2.HTTPFault | None:
    if fault is None:
        return None
    out = fault_pb2.HTTPFault()
    delay = fault.delay
    if delay is not None and (d := duration(delay.fixed_delay)) is not None:
        out.delay.fixed_delay.CopyFrom(d)
        pct: float = (
            _percent(delay.percentage)
            if delay.percentage is not None
            else (min(max(delay.percent, 0), 100) if delay.percent is not None else 100.0)
        )
        out.delay.percentage.CopyFrom(fraction(pct))
    abort = fault.abort
    if abort is not None and (abort.http_status or abort.grpc_status):
        if abort.http_status:
            out.abort.http_status = abort.http_status
        else:
            out.abort.grpc_status = _GRPC_CODES.get(str(abort.grpc_status), 2)
        pct = _percent(abort.percentage) if abort.percentage is not None else 100.0
        out.abort.percentage.CopyFrom(fraction(pct))
    return out if out.ByteSize() else None


_GRPC_CODES = {name: code for code, name in enumerate(GRPC_STATUS_NAMES)}


def _cors(cors: CorsPolicy | None) -> cors_pb2.CorsPolicy | None:
    if cors is None:
        return None
    out = cors_pb2.CorsPolicy()
    for m in cors.allow_origins or []:
        out.allow_origin_string_match.append(_string_matcher(m))
    for origin in cors.allow_origin or []:
        out.allow_origin_string_match.append(string_pb2.StringMatcher(exact=origin))
    if cors.allow_methods:
        out.allow_methods = ",".join(cors.allow_methods)
    if cors.allow_headers:
        out.allow_headers = ",".join(cors.allow_headers)
    if cors.expose_headers:
        out.expose_headers = ",".join(cors.expose_headers)
    if (d := duration(cors.max_age)) is not None:
        out.max_age = str(d.seconds)
    if cors.allow_credentials is not None:
        out.allow_credentials.value = cors.allow_credentials
    return out


def _redirect(r: HTTPRedirect) -> rc.RedirectAction:
    redirect = rc.RedirectAction()
    if r.uri:
        redirect.path_redirect = r.uri
    elif r.prefix_rewrite is not None:  # validation: only beside prefix matches
        redirect.prefix_rewrite = r.prefix_rewrite
    if r.authority:
        redirect.host_redirect = r.authority
    if r.port:
        redirect.port_redirect = r.port
    if r.scheme:
        redirect.scheme_redirect = r.scheme
    code = r.redirect_code or 301
    redirect.response_code = _REDIRECT_CODES.get(code, rc.RedirectAction.MOVED_PERMANENTLY)
    return redirect


def _direct_response(dr: HTTPDirectResponse) -> rc.DirectResponseAction:
    action = rc.DirectResponseAction(status=dr.status)
    body = dr.body
    if body is not None:
        if body.string is not None:
            action.body.inline_string = body.string
        elif body.bytes is not None:
            import base64

            action.body.inline_bytes = base64.b64decode(body.bytes)
    return action


def _route_clusters(
    dests: list[HTTPRouteDestination], cluster_for: ClusterFor, action: rc.RouteAction
) -> None:
    """One cluster, or weighted clusters (also for one destination with request headers)."""
    first_headers = dests[0].headers if dests else None
    if (
        len(dests) == 1
        and not _header_options(first_headers.request if first_headers is not None else None)[0]
    ):
        dest = dests[0].destination
        action.cluster = cluster_for(dest.host, _dest_port(dest), dest.subset or "")
        return
    total = sum(d.weight or 0 for d in dests)
    for d in dests:
        weight = d.weight if total else (100 // len(dests))
        if total and not weight:
            continue
        cw = action.weighted_clusters.clusters.add(
            name=cluster_for(
                d.destination.host, _dest_port(d.destination), d.destination.subset or ""
            ),
            weight={"value": weight},
        )
        if d.headers is not None:
            adds, removes = _header_options(d.headers.request)
            cw.request_headers_to_add.extend(adds)
            cw.request_headers_to_remove.extend(removes)
            adds, removes = _header_options(d.headers.response)
            cw.response_headers_to_add.extend(adds)
            cw.response_headers_to_remove.extend(removes)


def _rewrite(rewrite: HTTPRewrite | None, action: rc.RouteAction) -> None:
    if rewrite is None:
        return
    if rewrite.uri is not None:
        action.prefix_rewrite = rewrite.uri
    regex_rw = rewrite.uri_regex_rewrite
    if regex_rw is not None:
        # Validation requires match and rewrite; an unset regex is "" in the proto.
        action.regex_rewrite.pattern.CopyFrom(_regex(regex_rw.match or ""))
        action.regex_rewrite.substitution = regex_rw.rewrite
    if rewrite.authority:
        action.host_rewrite_literal = rewrite.authority


def _mirrors(rule: HTTPRoute) -> list[tuple[Destination, float]]:
    """(destination, percentage) for the legacy `mirror` and each of `mirrors`."""
    mirrors: list[tuple[Destination, float]] = []
    if rule.mirror is not None:
        pct = (
            _percent(rule.mirror_percentage)
            if rule.mirror_percentage is not None
            else (float(rule.mirror_percent) if rule.mirror_percent is not None else 100.0)
        )
        mirrors.append((rule.mirror, pct))
    for m in rule.mirrors or []:
        mirrors.append(
            (m.destination, _percent(m.percentage) if m.percentage is not None else 100.0)
        )
    return mirrors


def _action(rule: HTTPRoute, cluster_for: ClusterFor, route: rc.Route) -> None:
    """Fill the route's action from one HTTP rule (route, redirect or direct response)."""
    if rule.redirect is not None:
        route.redirect.CopyFrom(_redirect(rule.redirect))
        return
    if rule.direct_response is not None:
        route.direct_response.CopyFrom(_direct_response(rule.direct_response))
        return
    if not rule.route:  # a `delegate`, which is not supported: refuse, never NACK
        route.direct_response.status = 503
        route.direct_response.body.inline_string = "route delegation is not supported\n"
        return
    action = route.route
    _route_clusters(list(rule.route or []), cluster_for, action)
    timeout = duration(rule.timeout)
    action.timeout.CopyFrom(timeout or duration_pb2.Duration(seconds=0))
    retry = _retry(rule.retries)
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    _rewrite(rule.rewrite, action)
    for dest, pct in _mirrors(rule):
        policy = action.request_mirror_policies.add(
            cluster=cluster_for(dest.host, _dest_port(dest), dest.subset or "")
        )
        policy.runtime_fraction.default_value.CopyFrom(fraction(pct))


def _slash_rewrite(route: rc.Route) -> None:
    """`prefix: /front` with `rewrite: /` must give /page for /front/page, not //page."""
    prefix = route.match.prefix
    if route.HasField("route") and route.route.prefix_rewrite == "/" and prefix not in ("", "/"):
        route.route.ClearField("prefix_rewrite")
        route.route.regex_rewrite.pattern.regex = "^" + re.escape(prefix.rstrip("/")) + "/*"
        route.route.regex_rewrite.substitution = "/"


def http_routes(
    vs_spec: VirtualServiceSpec,
    cluster_for: ClusterFor,
    *,
    port: int,
    proxy_labels: Mapping[str, str],
    proxy_namespace: str,
    gateway: str = "mesh",
) -> list[rc.Route]:
    routes: list[rc.Route] = []
    for i, rule in enumerate(vs_spec.http or []):
        candidates: list[HTTPMatchRequest | None] = list(rule.match or []) or [None]
        matches = [
            m for m in candidates if _applies(m, proxy_labels, proxy_namespace, port, gateway)
        ]
        if not matches:
            continue
        template = rc.Route(name=rule.name or f"rule-{i}")
        _action(rule, cluster_for, template)
        if rule.headers is not None:
            host = _authority(rule.headers.request)
            if host is not None and template.HasField("route"):
                template.route.host_rewrite_literal = host
            adds, removes = _header_options(rule.headers.request)
            template.request_headers_to_add.extend(adds)
            template.request_headers_to_remove.extend(removes)
            adds, removes = _header_options(rule.headers.response)
            template.response_headers_to_add.extend(adds)
            template.response_headers_to_remove.extend(removes)
        if (fault := _fault(rule.fault)) is not None:
            template.typed_per_filter_config[FAULT_FILTER].CopyFrom(pack(fault))
        if (cors := _cors(rule.cors_policy)) is not None:
            template.typed_per_filter_config[CORS_FILTER].CopyFrom(pack(cors))
        for m in matches:
            route = rc.Route()
            route.CopyFrom(template)
            route.match.CopyFrom(_route_match(m))
            _slash_rewrite(route)
            routes.append(route)
    return routes


def default_route(cluster: str) -> rc.Route:
    """Routing with no VirtualService: everything to the service, Istio's default retries."""
    route = rc.Route(name="default", match=rc.RouteMatch(prefix="/"))
    route.route.cluster = cluster
    route.route.timeout.CopyFrom(duration_pb2.Duration(seconds=0))
    retry = _retry(None)
    assert retry is not None
    route.route.retry_policy.CopyFrom(retry)
    return route
