"""Conflicting config is resolved when the snapshot is built, never fatal to a push.

Unit level (fake catalog and config); the same rule end to end is in
tests/e2e/test_conflicts.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.resources import Resource, check_text
from pilot.app import Pilot
from pilot.config.fake import FakeConfigSource
from pilot.debounce import Batch
from pilot.metrics import Metrics
from pilot.model import MeshSnapshot, Proxy, ServiceKey
from pilot.networking import names
from pilot.registry import OnChange
from pilot.registry.fake import FakeRegistry
from pilot.settings import PilotSettings
from pilot.xds.cds import ClusterGenerator
from pilot.xds.context import PushContext
from pilot.xds.ecds import ExtensionConfigGenerator
from pilot.xds.eds import EndpointGenerator
from pilot.xds.lds import ListenerGenerator
from pilot.xds.rds import RouteGenerator
from tests.pilot.fixtures import instance


def resources(text: str, *created: int) -> list[Resource]:
    checked = check_text(text, "t.yaml")
    assert all(c.ok for c in checked), [str(i) for c in checked for i in c.errors]
    out = [c.resource for c in checked if c.resource is not None]
    return [dataclasses.replace(r, created=n) for r, n in zip(out, created, strict=True)]


def service_entry(
    name: str,
    namespace: str,
    host: str,
    ports: str = "[{number: 80, name: http, protocol: HTTP}]",
    address: str = "10.1.0.1",
) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{host}]
  ports: {ports}
  resolution: STATIC
  endpoints: [{{address: {address}}}]
---
"""


def test_same_host_in_two_namespaces_goes_to_the_oldest_entry() -> None:
    text = service_entry("api", "team-a", "api.example.com", address="10.1.0.1")
    text += service_entry("api", "team-b", "api.example.com", address="10.2.0.2")
    snap = MeshSnapshot.build(1, {}, resources(text, 20, 10))  # team-b's is older
    (svc,) = snap.services.values()
    assert svc.key.namespace == "team-b" and svc.instances[0].address == "10.2.0.2"
    (conflict,) = snap.conflicts
    assert conflict.subject == "host api.example.com"
    assert (conflict.winner, conflict.loser) == (
        "ServiceEntry/team-b/api",
        "ServiceEntry/team-a/api",
    )
    assert PushContext.build(snap).consistent({"team-a", "team-b", "default"}) == []


def test_a_catalog_service_owns_its_host() -> None:
    text = service_entry("shadow", "default", "reviews.default.svc.cluster.local")
    snap = MeshSnapshot.build(1, {"reviews": (instance("reviews", 1),)}, resources(text, 1))
    assert list(snap.services) == [ServiceKey("reviews", "default")]
    assert [c.winner for c in snap.conflicts] == ["catalog service default/reviews"]
    assert PushContext.build(snap).consistent({"default"}) == []


def test_one_host_on_two_http_ports_has_one_portless_domain() -> None:
    ports = "[{number: 80, name: http, protocol: HTTP}, {number: 8080, name: alt, protocol: HTTP}]"
    snap = MeshSnapshot.build(
        1, {}, resources(service_entry("api", "default", "api.example.com", ports), 1)
    )
    assert len(snap.services) == 2
    ctx = PushContext.build(snap)
    assert ctx.consistent({"default"}) == []
    (table,) = RouteGenerator().generate(
        ctx, _proxy("default"), frozenset({"outbound|http|default"}), None
    )
    domains = {
        vh.name: list(vh.domains)
        for vh in route_pb2.RouteConfiguration.FromString(table.value_bytes).virtual_hosts
    }
    assert domains == {
        "api.example.com:80": ["api.example.com", "api.example.com:80"],
        "api.example.com:8080": ["api.example.com:8080"],
    }


def test_two_virtual_services_for_one_host_report_the_younger() -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {n}, namespace: default}}
spec:
  hosts: [reviews]
  http: [{{route: [{{destination: {{host: reviews}}}}]}}]
---
"""
    snap = MeshSnapshot.build(
        1,
        {"reviews": (instance("reviews", 1),)},
        resources(vs.format(n="new") + vs.format(n="old"), 9, 4),
    )
    assert [str(c) for c in snap.conflicts] == [
        "host reviews.default.svc.cluster.local on the mesh: VirtualService/default/new loses "
        "to VirtualService/default/old (oldest wins)"
    ]
    found = snap.config.virtual_service("reviews.default.svc.cluster.local", namespace="default")
    assert found is not None and found[0].name == "old"


def test_export_to_decides_which_virtual_service_a_namespace_sees() -> None:
    """Istio's order: private to the proxy's namespace, then exported to it by name, then
    public; those exported differently never conflict."""
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {n}, namespace: {ns}}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  exportTo: {export}
  http: [{{route: [{{destination: {{host: reviews.default.svc.cluster.local}}}}]}}]
---
"""
    text = "".join(
        vs.format(n=n, ns=ns, export=export)
        for n, ns, export in [
            ("public", "default", '["*"]'),  # the oldest
            ("for-shop", "default", "[shop]"),
            ("shop-own", "shop", '["."]'),
            ("web-own", "web", "[web]"),
            ("elsewhere", "default", "[other]"),
        ]
    )
    snap = MeshSnapshot.build(
        1, {"reviews": (instance("reviews", 1),)}, resources(text, 1, 2, 3, 4, 5)
    )
    assert snap.conflicts == ()

    def seen_by(ns: str) -> str:
        found = snap.config.virtual_service("reviews.default.svc.cluster.local", namespace=ns)
        assert found is not None
        return f"{found[0].namespace}/{found[0].name}"

    assert seen_by("shop") == "shop/shop-own"
    assert seen_by("web") == "web/web-own"
    assert seen_by("default") == "default/public"
    assert seen_by("other") == "default/elsewhere"
    assert [r.name for r in snap.config.virtual_services("mesh", "shop")] == [
        "shop-own",
        "for-shop",
        "public",
    ]


def _proxy(namespace: str) -> Proxy:
    return Proxy(id=f"p-{namespace}", service="client", namespace=namespace, outbound_port=15001)


def _pilot() -> tuple[Pilot, FakeRegistry, FakeConfigSource]:
    holder: dict[str, object] = {}

    def registry(on_change: OnChange, _: Metrics) -> FakeRegistry:
        holder["r"] = FakeRegistry(on_change)
        return holder["r"]  # type: ignore[return-value]

    def config(on_change: OnChange, _: Metrics) -> FakeConfigSource:
        holder["c"] = FakeConfigSource(on_change)
        return holder["c"]  # type: ignore[return-value]

    pilot = Pilot(PilotSettings(), registry_factory=registry, config_factory=config)
    return pilot, holder["r"], holder["c"]  # type: ignore[return-value]


def _metric(pilot: Pilot, name: str) -> float | None:
    return pilot.metrics.registry.get_sample_value(name)


REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
NAMESPACES = ["default", "team-a", "team-b"]


async def test_conflicting_entries_do_not_freeze_the_mesh() -> None:
    pilot, registry, config = _pilot()
    registry.set("reviews", [instance("reviews", 1)])
    text = service_entry("api", "team-a", "api.example.com") + service_entry(
        "api", "team-b", "api.example.com"
    )
    config.set(resources(text, 1, 2))
    await pilot.push(Batch(0.0, 0.0))
    assert _metric(pilot, "pilot_config_conflicts") == 1
    before = pilot.ads.context
    registry.set("reviews", [instance("reviews", 1), instance("reviews", 2)])
    await pilot.push(Batch(0.0, 0.0))
    assert pilot.ads.context is not before, "the endpoint change was not published"
    assert (
        pilot.snapshot is not None
        and len(pilot.snapshot.services[ServiceKey("reviews", "default")].instances) == 2
    )
    assert _metric(pilot, "pilot_snapshot_inconsistent_total") == 0


async def test_the_consistency_alarm_withholds_only_the_offenders(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A catalog name that collides with another service's domain: not reachable through
    # the catalog rules, which is why the check is only an alarm.
    pilot, registry, _ = _pilot()
    odd = dataclasses.replace(instance("odd", 9), service="reviews.default")
    registry.set("odd", [odd])
    registry.set("reviews", [instance("reviews", 1)])
    registry.set("ratings", [instance("ratings", 3)])
    with caplog.at_level(logging.ERROR):
        await pilot.push(Batch(0.0, 0.0))
    assert "withholding" in caplog.text
    snap = pilot.snapshot
    assert snap is not None and ServiceKey("reviews.default", "default") not in snap.services
    assert ServiceKey("reviews", "default") in snap.services and snap.withheld
    registry.set("ratings", [instance("ratings", 3), instance("ratings", 4)])
    await pilot.push(Batch(0.0, 0.0))
    ratings = pilot.snapshot.services[ServiceKey("ratings", "default")]  # type: ignore[union-attr]
    assert len(ratings.instances) == 2, "the rest of the mesh still gets pushes"


# --- property: any set of valid config, conflicts included, leaves pushes flowing ---

HOSTS = ["api.example.com", "db.example.com", "reviews.default.svc.cluster.local", "reviews"]
PORTS = [
    "[{number: 80, name: http, protocol: HTTP}]",
    "[{number: 8080, name: web, protocol: HTTP}]",
    "[{number: 80, name: http, protocol: HTTP}, {number: 8080, name: web, protocol: HTTP}]",
    "[{number: 5432, name: tcp, protocol: TCP}]",
]
# Few names, hosts and ports, so that Gateways and the VirtualServices bound to them
# often claim the same host on the same port.
GATEWAYS = ["gw-a", "gw-b"]
GATEWAY_HOSTS = ["shop.example.com", "*.example.com", "*"]
GATEWAY_PORTS = [80, 8080]
SIDECAR_HOSTS = [
    "./*",
    "*/*",
    "istio-system/*",
    "*/api.example.com",
    "team-a/*",
    "default/reviews.default.svc.cluster.local",
]


def _vs(name: str, ns: str, host: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{host}]
  http: [{{route: [{{destination: {{host: {host}}}}}]}}]
---
"""


def _dr(name: str, ns: str, host: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {host}
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
"""


def _gateway(name: str, ns: str, host: str, port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: {port}, name: http-{port}, protocol: HTTP}}, hosts: ["{host}"]}}]
---
"""


def _bound_vs(name: str, ns: str, gateways: list[str], host: str) -> str:
    """A VirtualService on gateways (and maybe the mesh) routing to the catalog's reviews."""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: ["{host}"]
  gateways: [{", ".join(gateways)}]
  http: [{{route: [{{destination: {{host: reviews.default.svc.cluster.local}}}}]}}]
---
"""


def _sidecar(name: str, ns: str, hosts: list[str]) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: {ns}}}
spec:
  egress: [{{hosts: [{", ".join(f'"{h}"' for h in hosts)}]}}]
---
"""


_NS = st.sampled_from(NAMESPACES)
config_item = st.one_of(
    st.tuples(st.just("se"), _NS, st.sampled_from(HOSTS), st.sampled_from(PORTS)),
    st.tuples(st.just("vs"), _NS, st.sampled_from(HOSTS)),
    st.tuples(st.just("dr"), _NS, st.sampled_from(HOSTS)),
    st.tuples(
        st.just("gw"),
        _NS,
        st.sampled_from(GATEWAYS),
        st.sampled_from(GATEWAY_HOSTS),
        st.sampled_from(GATEWAY_PORTS),
    ),
    st.tuples(
        st.just("gwvs"),
        _NS,
        st.lists(
            st.sampled_from(["mesh", *(f"{ns}/{gw}" for ns in NAMESPACES for gw in GATEWAYS)]),
            min_size=1,
            max_size=2,
            unique=True,
        ),
        st.sampled_from(["shop.example.com", "api.example.com", "*.example.com"]),
    ),
    st.tuples(
        st.just("sc"), _NS, st.lists(st.sampled_from(SIDECAR_HOSTS), min_size=1, unique=True)
    ),
)


def _config_text(items: list[tuple[Any, ...]]) -> tuple[str, int]:
    """The documents the items describe (a Gateway name taken twice in one namespace is
    kept once) and how many there are."""
    text, count, gateways = "", 0, set()
    for i, (kind, ns, *rest) in enumerate(items):
        if kind == "se":
            host, ports = rest
            full = host if "." in host else f"{host}.{ns}.svc.cluster.local"
            text += service_entry(f"se{i}", ns, full, ports)
        elif kind == "vs":
            text += _vs(f"vs{i}", ns, rest[0])
        elif kind == "dr":
            text += _dr(f"dr{i}", ns, rest[0])
        elif kind == "gw":
            name, host, port = rest
            if (ns, name) in gateways:
                continue
            gateways.add((ns, name))
            text += _gateway(name, ns, host, port)
        elif kind == "gwvs":
            text += _bound_vs(f"gwvs{i}", ns, *rest)
        else:
            text += _sidecar(f"sc{i}", ns, rest[0])
        count += 1
    return text, count


def _gateway_proxy() -> Proxy:
    return Proxy(
        id="gw",
        service="ingressgateway",
        namespace="istio-system",
        labels={"istio": "ingressgateway"},
        instance_ip="10.0.0.100",
        kind="gateway",
    )


def _everything(ctx: PushContext, proxy: Proxy) -> tuple[set[str], dict[str, bytes]]:
    """What the proxy gets, following names as Envoy does: (its clusters, each EDS
    cluster's load assignment). Generating LDS, RDS and ECDS must not fail either."""
    clusters = [
        cluster_pb2.Cluster.FromString(r.value_bytes)
        for r in ClusterGenerator().generate(ctx, proxy, frozenset(), None)
    ]
    eds = frozenset(c.name for c in clusters if c.type == cluster_pb2.Cluster.EDS)
    assignments = {
        r.name: r.value_bytes for r in EndpointGenerator().generate(ctx, proxy, eds, None)
    }
    assert set(assignments) == eds, "an EDS cluster without its load assignment"
    routes = set()
    for r in ListenerGenerator().generate(ctx, proxy, frozenset(), None):
        listener = listener_pb2.Listener.FromString(r.value_bytes)
        for chain in listener.filter_chains:
            for f in chain.filters:
                hcm = hcm_pb2.HttpConnectionManager()
                if f.typed_config.Unpack(hcm) and hcm.HasField("rds"):
                    routes.add(hcm.rds.route_config_name)
    tables = RouteGenerator().generate(ctx, proxy, frozenset(routes), None)
    assert {t.name for t in tables} == routes, "a listener names a route table that is not sent"
    ExtensionConfigGenerator().generate(ctx, proxy, frozenset(names.INBOUND_AUTH_FILTERS), None)
    return {c.name for c in clusters}, assignments


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(items=st.lists(config_item, max_size=8), ages=st.randoms())
def test_any_valid_config_keeps_endpoint_pushes_flowing(
    items: list[tuple[Any, ...]], ages: object
) -> None:
    text, count = _config_text(items)
    order = list(range(count))
    ages.shuffle(order)  # type: ignore[attr-defined]
    scoped = {ns for kind, ns, *_ in items if kind == "sc"}  # namespaces a Sidecar narrows

    async def scenario() -> None:
        pilot, registry, config = _pilot()
        registry.set("reviews", [instance("reviews", 1)])
        config.set(resources(text, *order) if text else [])
        await pilot.push(Batch(0.0, 0.0))
        registry.set("reviews", [instance("reviews", 1), instance("reviews", 2)])
        await pilot.push(Batch(0.0, 0.0))
        snap = pilot.snapshot
        assert snap is not None and snap.withheld == ()
        assert len(snap.services[ServiceKey("reviews", "default")].instances) == 2
        ctx = pilot.ads.context
        assert ctx is not None and ctx.consistent(NAMESPACES) == []
        for proxy in [*(_proxy(ns) for ns in NAMESPACES), _gateway_proxy()]:
            clusters, assignments = _everything(ctx, proxy)
            if proxy.kind == "gateway" or proxy.namespace not in scoped:
                assert REVIEWS in clusters, f"{proxy.id} lost the reviews cluster"
            if REVIEWS in clusters:
                assert assignments[REVIEWS].count(b"10.0.0.2") == 1, (
                    f"{proxy.id} missed the new endpoint"
                )

    asyncio.run(scenario())
