"""Conflicting config, resolved where the snapshot is built: one owner per name.

Two resources that claim the same thing never stop a push. The rule is
Istio's: the oldest resource wins, where age is the Consul CreateIndex of its
key (a resource replaced in place keeps its age; one deleted and created
again is new). The loser is left out for what it claims and reported here, in
Pilot's `/debug/conflicts` and its `pilot_config_conflicts` gauge; Galley's
analysis warns about the same conflicts when the config is applied.

- A service host belongs to the catalog service of that name, else to the
  oldest ServiceEntry declaring it (all of that host's ports come from it).
- A host routed for the mesh or for one gateway belongs to the oldest
  VirtualService naming it there.
- An SNI name on a gateway port belongs to the oldest Gateway whose
  TLS-terminating server names it, among Gateways with the same selector.
- A host on a plain HTTP gateway port shared by several Gateways (same
  selector) belongs to the VirtualService bound to the oldest of them.
- A plaintext gateway port (same selector) is of the kind of its oldest server:
  HTTP servers share it, a TCP server takes it alone.
- A gateway TCP server (plain, or TLS terminated) is routed by the oldest
  VirtualService bound to its Gateway whose `tcp` route matches the port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from api.networking.gateway import GatewaySpec, Server, server_admits
from api.networking.service_entry import ServiceEntrySpec
from api.networking.virtual_service import VirtualServiceSpec
from api.resources import Resource
from pilot.config.index import fqdn, gateway_ref
from pilot.networking.tcp_route import gateway_tcp_claims

__all__ = [
    "Conflict",
    "gateway_route_conflicts",
    "gateway_server_conflicts",
    "host_owners",
    "virtual_service_conflicts",
]


@dataclass(frozen=True, slots=True, order=True)
class Conflict:
    subject: str  # what both claim, e.g. "host api.example.com"
    winner: str  # 'Kind/ns/name', or the catalog service
    loser: str  # 'Kind/ns/name': left out for that subject

    def to_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "winner": self.winner, "loser": self.loser}

    def __str__(self) -> str:
        return f"{self.subject}: {self.loser} loses to {self.winner} (oldest wins)"


def host_owners(
    catalog_hosts: Mapping[str, str], entries: Iterable[Resource]
) -> tuple[dict[str, str], list[Conflict]]:
    """Who owns each ServiceEntry host: {host: owner ref}, and the conflicts.

    `catalog_hosts` maps the hostname of every catalog service to a description
    of it; `entries` are ServiceEntries, oldest first.
    """
    owners = dict(catalog_hosts)
    conflicts: list[Conflict] = []
    for entry in entries:
        for host in dict.fromkeys(_entry_hosts(entry)):
            owner = owners.setdefault(host, entry.ref)
            if owner != entry.ref:
                conflicts.append(Conflict(f"host {host}", owner, entry.ref))
    return owners, conflicts


def _entry_hosts(entry: Resource) -> list[str]:
    spec = entry.spec
    assert isinstance(spec, ServiceEntrySpec)
    return [h for h in spec.hosts or [] if "*" not in h]


def virtual_service_conflicts(services: Iterable[Resource]) -> list[Conflict]:
    """Hosts that several VirtualServices exported alike route for the same gateway (or
    the mesh); `services` oldest first, and the first one of each host wins. One exported
    to fewer namespaces (a consumer's own route) takes precedence there: no conflict."""
    owners: dict[tuple[str, str, str, bool], str] = {}
    conflicts: list[Conflict] = []
    for vs in services:
        spec = vs.spec
        assert isinstance(spec, VirtualServiceSpec)
        gateways = [gateway_ref(g, vs.namespace) for g in spec.gateways or []]
        hosts = spec.hosts or []
        views = spec.views(vs.namespace)
        for gateway in dict.fromkeys(gateways or ["mesh"]):
            for host in dict.fromkeys(fqdn(h, vs.namespace) for h in hosts):
                winners = {owners.setdefault((host, gateway, *v), vs.ref) for v in views}
                where = "the mesh" if gateway == "mesh" else f"gateway {gateway}"
                for owner in sorted(winners - {vs.ref}):
                    conflicts.append(Conflict(f"host {host} on {where}", owner, vs.ref))
    return conflicts


def gateway_server_conflicts(gateways: Iterable[Resource]) -> list[Conflict]:
    """SNI names that TLS-terminating servers of several Gateways (same selector, same
    port) claim; `gateways` oldest first. Servers of one Gateway never conflict here:
    validation keeps its port names unique, and the first server of a host wins."""
    owners: dict[tuple[frozenset[tuple[str, str]], int, str], str] = {}
    plaintext: dict[tuple[frozenset[tuple[str, str]], int], tuple[str, str]] = {}
    conflicts: list[Conflict] = []
    for gw in gateways:
        spec = gw.spec
        assert isinstance(spec, GatewaySpec)
        selector = frozenset((spec.selector or {}).items())
        for server in spec.servers or []:
            kind = _plaintext_kind(server)
            if kind is not None and server.port is not None and server.port.number:
                number = server.port.number
                owner_kind, owner = plaintext.setdefault((selector, number), (kind, gw.ref))
                if owner != gw.ref and (kind == "tcp" or owner_kind == "tcp"):
                    conflicts.append(Conflict(f"plaintext gateway port {number}", owner, gw.ref))
            tls, port = server.tls, server.port
            terminating = tls is not None and tls.mode not in (None, "PASSTHROUGH")
            if not terminating or port is None or port.number is None:
                continue
            hosts = [h.rpartition("/")[2] for h in server.hosts or []]
            for host in ["*"] if "*" in hosts else dict.fromkeys(hosts):
                owner = owners.setdefault((selector, port.number, host), gw.ref)
                if owner != gw.ref:
                    conflicts.append(
                        Conflict(f"SNI {host} on gateway port {port.number}", owner, gw.ref)
                    )
    return conflicts


_HTTP = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
_TCP = frozenset({"TCP", "MONGO", "REDIS", "MYSQL"})
_TERMINATING = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL"})


def _plaintext_kind(server: Server) -> str | None:
    """'http' or 'tcp' for a server served in plaintext (as gateway.GatewayServer.kind)."""
    protocol = (server.port.protocol or "").upper() if server.port else ""
    mode = (server.tls.mode if server.tls is not None else None) or "PASSTHROUGH"
    if protocol in _HTTP and mode == "PASSTHROUGH":
        return "http"
    if protocol in _TCP and server.tls is None:
        return "tcp"
    return None


def _tcp_server(server: Server) -> bool:
    """A server relayed as TCP: plain TCP, or a TLS server terminating TLS."""
    protocol = (server.port.protocol or "").upper() if server.port else ""
    if protocol in _TCP and server.tls is None:
        return True
    return protocol == "TLS" and server.tls is not None and server.tls.mode in _TERMINATING


def gateway_route_conflicts(
    gateways: Iterable[Resource], services: Iterable[Resource]
) -> list[Conflict]:
    """Hosts that VirtualServices bound to different Gateways claim on one plain HTTP port
    of the same gateway proxies (same selector): those servers share one route table, so
    the VirtualService of the oldest Gateway routes the host. Both oldest first; the
    same Gateway's rivals are `virtual_service_conflicts`' to report. Also the
    VirtualServices whose `tcp` routes claim a TCP server an older one routes."""
    bound: dict[str, list[Resource]] = {}
    for vs in services:
        spec = vs.spec
        assert isinstance(spec, VirtualServiceSpec)
        for ref in dict.fromkeys(gateway_ref(g, vs.namespace) for g in spec.gateways or []):
            bound.setdefault(ref, []).append(vs)
    owners: dict[tuple[frozenset[tuple[str, str]], int, str], tuple[str, str]] = {}
    conflicts: list[Conflict] = []
    for gw in gateways:
        spec = gw.spec
        assert isinstance(spec, GatewaySpec)
        selector = frozenset((spec.selector or {}).items())
        ref = f"{gw.namespace}/{gw.name}"
        conflicts += _tcp_route_conflicts(ref, gw.namespace, spec, bound.get(ref, []))
        for server in spec.servers or []:
            port = server.port
            plain = server.tls is None or server.tls.mode in (None, "PASSTHROUGH")
            if port is None or port.number is None or not plain:
                continue
            if (port.protocol or "").upper() not in _HTTP:
                continue
            for vs in bound.get(ref, []):
                vs_spec = vs.spec
                assert isinstance(vs_spec, VirtualServiceSpec)
                for host in vs_spec.hosts or []:
                    if not any(
                        server_admits(h, host, vs.namespace, gw.namespace)
                        for h in server.hosts or []
                    ):
                        continue
                    key = (selector, port.number, host)
                    owner_gw, owner_vs = owners.setdefault(key, (ref, vs.ref))
                    if owner_gw != ref and owner_vs != vs.ref:
                        conflicts.append(
                            Conflict(f"host {host} on gateway port {port.number}", owner_vs, vs.ref)
                        )
    return sorted(set(conflicts))


def _tcp_route_conflicts(
    ref: str, namespace: str, spec: GatewaySpec, bound: list[Resource]
) -> list[Conflict]:
    """VirtualServices whose `tcp` routes claim a TCP server of this Gateway that an older
    VirtualService routes (`tcp_route.gateway_tcp_claims`)."""
    out = []
    for server in spec.servers or []:
        port = server.port
        if port is None or not port.number or not _tcp_server(server):
            continue

        def admits(host: str, vs_namespace: str, server: Server = server) -> bool:
            return any(server_admits(h, host, vs_namespace, namespace) for h in server.hosts or [])

        terminated = server.tls is not None
        claims = gateway_tcp_claims(ref, port.number, admits, bound, terminated=terminated)
        for vs, _ in claims[1:]:
            out.append(
                Conflict(f"tcp port {port.number} on gateway {ref}", claims[0][0].ref, vs.ref)
            )
    return out
