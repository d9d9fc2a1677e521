"""VirtualService semantic rules: hosts, gateways, routes, exportTo, reachability.

`validate` is the kind's entry point. HTTP routes are checked in
`virtual_service_http`; TLS and TCP routes, and the reachability warnings for
all three route kinds, are here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from api import checks
from api.issues import Issues
from api.networking.virtual_service_checks import (
    check_gateway_names,
    check_match_source,
    check_weights,
    host_matches,
    host_subset_of,
)
from api.networking.virtual_service_http import check_http_route

if TYPE_CHECKING:
    from api.model import Spec
    from api.networking.virtual_service import (
        HTTPMatchRequest,
        HTTPRoute,
        TCPRoute,
        TLSRoute,
        VirtualServiceSpec,
    )

__all__ = ["check_export_to", "validate"]

# A gateway's SNI host for auto-passthrough: outbound_.<port>_._.<hostname>
_GATEWAY_SNI = re.compile(r"outbound_\.(\d+)_\._\.(.+)")


def validate(spec: VirtualServiceSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    hosts = spec.hosts or []
    delegate_vs = not hosts
    gateways = spec.gateways or []
    gateway_only = bool(gateways) and "mesh" not in gateways
    if delegate_vs:
        for field, value in (("gateways", gateways), ("tls", spec.tls), ("tcp", spec.tcp)):
            if value:
                issues.error(f"a delegate VirtualService (no hosts) must not set {field}", field)
    check_gateway_names(gateways, issues.at("gateways"))
    _check_hosts(
        hosts, gateway_only=gateway_only, gateway_sni=gateway_only and bool(spec.tls), issues=issues
    )
    if not (spec.http or spec.tcp or spec.tls):
        issues.error("at least one of http, tcp or tls routes is required")
    for i, http in enumerate(spec.http or []):
        check_http_route(
            http, issues.at("http", i), delegate_vs=delegate_vs, gateway_only=gateway_only
        )
    for i, tls in enumerate(spec.tls or []):
        _check_tls_route(tls, hosts, gateway_only, issues.at("tls", i))
    for i, tcp in enumerate(spec.tcp or []):
        _check_tcp_route(tcp, issues.at("tcp", i))
    check_export_to(spec.export_to, str(meta.get("namespace", "")), issues.at("exportTo"))
    _warn_unreachable_http(spec.http or [], issues.at("http"))
    _warn_unreachable_l4(spec.tls or [], issues.at("tls"))
    _warn_unreachable_l4(spec.tcp or [], issues.at("tcp"))


def _host_error(host: str, *, gateway_sni: bool) -> str | None:
    if gateway_sni and (m := _GATEWAY_SNI.fullmatch(host)):
        msg = checks.port(int(m.group(1))) or checks.wildcard_domain(m.group(2))
    elif (msg := checks.wildcard_domain(host)) is not None and checks.is_ip(host):
        msg = None
    if msg is not None:
        return f"invalid host {host!r}: {msg}"
    return None


def _check_hosts(
    hosts: Sequence[str], *, gateway_only: bool, gateway_sni: bool, issues: Issues
) -> None:
    all_valid = True
    for i, host in enumerate(hosts):
        if (msg := _host_error(host, gateway_sni=gateway_sni)) is not None:
            issues.error(msg, "hosts", i)
            all_valid = False
        elif host == "*" and not gateway_only:
            issues.error(
                "the host '*' is not allowed for a VirtualService bound to the mesh", "hosts", i
            )
            all_valid = False
    if not all_valid:
        return
    for i, a in enumerate(hosts):
        for b in hosts[i + 1 :]:
            if host_matches(a, b):
                issues.error(f"duplicate or overlapping hosts {a!r} and {b!r}", "hosts", i)


def check_export_to(export_to: Sequence[str] | None, namespace: str, issues: Issues) -> None:
    """Each entry '.', '*' or a namespace; no duplicates; '*' alone."""
    seen: set[str] = set()
    for i, entry in enumerate(export_to or []):
        if entry not in (".", "*") and (msg := checks.dns_label(entry)) is not None:
            issues.error(f"invalid exportTo entry: {msg}", i)
            continue
        key = namespace if entry == "." and namespace else entry
        if key in seen:
            issues.error(f"duplicate exportTo entry {entry!r}", i)
        seen.add(key)
    if "*" in seen and len(seen) > 1:
        issues.error("'*' exports to every namespace and cannot be combined with other entries")


def _check_tls_route(
    route: TLSRoute, hosts: Sequence[str], gateway_only: bool, issues: Issues
) -> None:
    if not route.match:
        issues.error("a TLS route needs at least one match", "match")
    for i, match in enumerate(route.match or []):
        at = issues.at("match", i)
        if not match.sni_hosts:
            at.error("a TLS match needs at least one SNI host", "sniHosts")
        for j, sni in enumerate(match.sni_hosts or []):
            if checks.is_ip(sni):
                at.warn(
                    f"SNI host {sni!r} is an IP address, which most TLS clients never send",
                    "sniHosts",
                    j,
                )
            elif (msg := _host_error(sni, gateway_sni=gateway_only)) is not None:
                at.error(msg, "sniHosts", j)
            elif not any(host_subset_of(sni, h) for h in hosts):
                at.error(
                    f"SNI host {sni!r} is not a subset of any of the hosts [{', '.join(hosts)}]",
                    "sniHosts",
                    j,
                )
        _check_subnets(match.destination_subnets, at.at("destinationSubnets"))
        check_match_source(
            match.port, match.source_labels, match.gateways, match.source_namespace, at
        )
    if not route.route:
        issues.error("a TLS route needs at least one destination", "route")
    check_weights(route.route or [], issues.at("route"))


def _check_tcp_route(route: TCPRoute, issues: Issues) -> None:
    for i, match in enumerate(route.match or []):
        at = issues.at("match", i)
        _check_subnets(match.destination_subnets, at.at("destinationSubnets"))
        if match.source_subnet and (msg := checks.ip_or_cidr(match.source_subnet)) is not None:
            at.error(msg, "sourceSubnet")
        check_match_source(
            match.port, match.source_labels, match.gateways, match.source_namespace, at
        )
    if not route.route:
        issues.error("a TCP route needs at least one destination", "route")
    check_weights(route.route or [], issues.at("route"))


def _check_subnets(subnets: Sequence[str] | None, issues: Issues) -> None:
    for i, subnet in enumerate(subnets or []):
        if (msg := checks.ip_or_cidr(subnet)) is not None:
            issues.error(msg, i)


# --- reachability (warnings only) -------------------------------------------------


def _key(match: Spec, *, without: tuple[str, ...] = ("name",)) -> str:
    data = match.model_dump(mode="json", exclude_none=True, exclude=set(without))
    return json.dumps(data, sort_keys=True)


def _rule_label(kind: str, index: int, name: str | None = None) -> str:
    return f"{kind}[{index}]" + (f" ({name!r})" if name else "")


def _warn_after_catch_all(
    matches: Sequence[Sequence[Spec] | None],
    names: Sequence[str | None],
    kind: str,
    issues: Issues,
) -> None:
    catch_all: int | None = None
    for i, rule_matches in enumerate(matches):
        if catch_all is not None:
            issues.warn(
                f"rule is never used: {_rule_label(kind, catch_all, names[catch_all])} has no "
                "match and takes all traffic first (only the last rule may have no match)",
                i,
            )
        if not rule_matches:
            catch_all = i


def _warn_duplicates(
    matches: Sequence[Sequence[Spec] | None],
    names: Sequence[str | None],
    kind: str,
    issues: Issues,
) -> list[list[bool]]:
    """Warn for matches repeating earlier ones; returns which matches were repeats."""
    seen: dict[str, int] = {}
    repeats: list[list[bool]] = []
    for i, rule_matches in enumerate(matches):
        flags = []
        for j, match in enumerate(rule_matches or []):
            key = _key(match)
            earlier = seen.get(key)
            flags.append(earlier is not None)
            if earlier is not None:
                issues.warn(
                    "match is never used: the same match is in "
                    f"{_rule_label(kind, earlier, names[earlier])}",
                    i,
                    "match",
                    j,
                )
            seen[key] = i
        repeats.append(flags)
    return repeats


def _prefix_covered(match: HTTPMatchRequest, earlier: HTTPMatchRequest) -> bool:
    """An earlier, shorter uri prefix with the same other conditions covers `match`."""
    if match.uri is None or earlier.uri is None:
        return False
    prefix, shorter = match.uri.prefix, earlier.uri.prefix
    if prefix is None or shorter is None or not prefix.startswith(shorter) or prefix == shorter:
        return False
    return _key(match, without=("name", "uri")) == _key(earlier, without=("name", "uri"))


def _warn_unreachable_http(routes: Sequence[HTTPRoute], issues: Issues) -> None:
    names = [r.name for r in routes]
    matches = [r.match for r in routes]
    _warn_after_catch_all(matches, names, "http", issues)
    repeats = _warn_duplicates(matches, names, "http", issues)
    for i, route in enumerate(routes):
        for j, match in enumerate(route.match or []):
            if repeats[i][j]:
                continue
            covering = next(
                (
                    (k, m)
                    for k, earlier in enumerate(routes[:i])
                    for m, other in enumerate(earlier.match or [])
                    if _prefix_covered(match, other)
                ),
                None,
            )
            if covering is not None:
                repeats[i][j] = True
                k, m = covering
                issues.warn(
                    f"match is never used: the shorter uri prefix in "
                    f"{_rule_label('http', k, names[k])}.match[{m}] takes its requests first",
                    i,
                    "match",
                    j,
                )
    _warn_all_repeated(repeats, issues)


def _warn_unreachable_l4(routes: Sequence[TLSRoute] | Sequence[TCPRoute], issues: Issues) -> None:
    kind = "tls" if issues.prefix[-1:] == ("tls",) else "tcp"
    names: list[str | None] = [None] * len(routes)
    matches: list[Sequence[Spec] | None] = [r.match for r in routes]
    _warn_after_catch_all(matches, names, kind, issues)
    _warn_all_repeated(_warn_duplicates(matches, names, kind, issues), issues)


def _warn_all_repeated(repeats: list[list[bool]], issues: Issues) -> None:
    for i, flags in enumerate(repeats):
        if flags and all(flags):
            issues.warn(
                "rule is never used: every one of its matches is handled by an earlier rule", i
            )
