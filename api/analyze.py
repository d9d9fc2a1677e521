"""Cross-resource analysis, as `istioctl analyze` does it: warnings, never errors.

- a route (or mirror) to a subset that no DestinationRule for that host defines
- a host that is neither a known service nor declared by a ServiceEntry
- two VirtualServices for one host bound to the same gateway (or the mesh), seen
  alike by some namespace (`exportTo`)
- a ServiceEntry host that a catalog service or an older ServiceEntry declares
- an AuthorizationPolicy rule Pilot cannot translate, which fails closed
  (api/security/authz_fail_closed.py)

Where two resources claim the same thing Pilot uses the oldest (the catalog
first for hosts); config not stored yet counts as the newest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from api.issues import Issue, Severity
from api.security.authorization_policy import AuthorizationPolicySpec
from api.security.authz_fail_closed import fail_closed

__all__ = ["analyze", "fqdn"]

SUFFIX = "svc.cluster.local"


def fqdn(host: str, namespace: str) -> str:
    """Istio's resolution of a host in a namespace: only a name without dots is short."""
    if "." not in host and host != "*":
        return f"{host}.{namespace}.{SUFFIX}"
    return host.rstrip(".")


def _matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return pattern == host


def _destinations(spec: Any) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(path, Destination) for every destination and mirror a VirtualService names."""
    for kind in ("http", "tcp", "tls"):
        for i, rule in enumerate(getattr(spec, kind, None) or []):
            for j, dest in enumerate(getattr(rule, "route", None) or []):
                if getattr(dest, "destination", None) is not None:
                    yield (kind, i, "route", j, "destination"), dest.destination
            if kind == "http":
                if getattr(rule, "mirror", None) is not None:
                    yield (kind, i, "mirror"), rule.mirror
                for j, m in enumerate(getattr(rule, "mirrors", None) or []):
                    if getattr(m, "destination", None) is not None:
                        yield (kind, i, "mirrors", j, "destination"), m.destination


def _path(parts: Iterable[str | int]) -> str:
    from api.issues import join_path

    return join_path(("spec", *parts))


def _age(r: Any) -> tuple[float, str, str]:
    return (r.created or float("inf"), r.namespace, r.name)


def _host_claims(resources: list[Any], services: set[str], out: dict[str, list[Issue]]) -> None:
    owners = {host: f"the catalog service {host}" for host in services}
    for r in sorted((r for r in resources if r.kind == "ServiceEntry"), key=_age):
        for i, host in enumerate(r.spec.hosts or []):
            if "*" in host:
                continue
            full = fqdn(host, r.namespace)
            owner = owners.setdefault(full, r.ref)
            if owner != r.ref:
                out[r.ref].append(
                    Issue(
                        _path(("hosts", i)),
                        f"host {full} is already declared by {owner}: Pilot uses the oldest "
                        "declaration and leaves this one out for that host",
                        Severity.WARNING,
                    )
                )


def _targets(resources: list[Any], services: set[str]) -> tuple[dict[str, set[str]], set[str]]:
    """(subsets per DestinationRule host, every declared host) of the config."""
    subsets: dict[str, set[str]] = defaultdict(set)
    declared: set[str] = set(services)
    for r in resources:
        if r.kind == "DestinationRule":
            host = fqdn(r.spec.host, r.namespace)
            subsets[host].update(s.name for s in (r.spec.subsets or []))
        elif r.kind == "ServiceEntry":
            declared.update(fqdn(h, r.namespace) for h in (r.spec.hosts or []))
    return subsets, declared


def _known(host: str, declared: set[str]) -> bool:
    return any(_matches(d, host) or _matches(host, d) for d in declared)


# (host, gateway, a view from VirtualServiceSpec.views) -> the VirtualServices claiming it
_Claims = dict[tuple[str, str, tuple[str, bool]], list[str]]


def _check_hosts(
    r: Any,
    services: set[str],
    declared: set[str],
    owners: _Claims,
    out: dict[str, list[Issue]],
) -> None:
    """Record the VirtualService's (host, gateway) claims; warn on unknown mesh hosts."""
    gateways = list(r.spec.gateways or []) or ["mesh"]
    for i, host in enumerate(r.spec.hosts or []):
        full = fqdn(host, r.namespace)
        for gw in gateways:
            for view in r.spec.views(r.namespace):
                owners[(full, gw, view)].append(r.ref)
        if services and "*" not in host and gateways == ["mesh"] and not _known(full, declared):
            out[r.ref].append(
                Issue(
                    _path(("hosts", i)),
                    f"host {host!r} is not a known service or ServiceEntry host",
                    Severity.WARNING,
                )
            )


def _check_destinations(
    r: Any,
    services: set[str],
    declared: set[str],
    subsets: dict[str, set[str]],
    out: dict[str, list[Issue]],
) -> None:
    """Warn on destinations to unknown hosts or undefined subsets."""
    for path, dest in _destinations(r.spec):
        host = fqdn(dest.host, r.namespace)
        if services and not _known(host, declared):
            out[r.ref].append(
                Issue(
                    _path((*path, "host")),
                    f"destination host {dest.host!r} is not a known service or ServiceEntry host",
                    Severity.WARNING,
                )
            )
        if dest.subset and dest.subset not in subsets.get(host, set()):
            out[r.ref].append(
                Issue(
                    _path((*path, "subset")),
                    f"subset {dest.subset!r} is not defined by any DestinationRule for {host}",
                    Severity.WARNING,
                )
            )


def _shared_hosts(owners: _Claims, out: dict[str, list[Issue]]) -> None:
    """Warn every VirtualService of a (host, gateway) that more than one routes."""
    warned: set[tuple[str, str, str]] = set()
    for (host, gw, _), refs in owners.items():
        refs = list(dict.fromkeys(refs))  # oldest first
        if len(refs) > 1:
            for ref in refs:
                if (host, gw, ref) in warned:  # seen alike in several namespaces
                    continue
                warned.add((host, gw, ref))
                others = ", ".join(x for x in refs if x != ref)
                verdict = "this one is used" if ref == refs[0] else f"{refs[0]} is used"
                out[ref].append(
                    Issue(
                        "spec.hosts",
                        f"host {host} (gateway {gw}) is also routed by "
                        f"{others}: only one VirtualService should own a host; the oldest "
                        f"wins ({verdict})",
                        Severity.WARNING,
                    )
                )


def analyze(resources: list[Any], services: set[str]) -> dict[str, list[Issue]]:
    """Warnings per resource ref ('Kind/ns/name')."""
    out: dict[str, list[Issue]] = defaultdict(list)
    _host_claims(resources, services, out)
    subsets, declared = _targets(resources, services)
    owners: _Claims = defaultdict(list)
    for r in sorted(resources, key=_age):
        if r.kind != "VirtualService":
            continue
        _check_hosts(r, services, declared, owners, out)
        _check_destinations(r, services, declared, subsets, out)
    _shared_hosts(owners, out)
    for r in resources:
        if r.kind == "AuthorizationPolicy":
            out[r.ref].extend(fail_closed(r.spec_as(AuthorizationPolicySpec), r.annotations))
    return {ref: issues for ref, issues in out.items() if issues}
