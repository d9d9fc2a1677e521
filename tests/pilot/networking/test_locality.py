"""Locality load balancing: where localities come from, which setting is in force, the
priorities and weights each proxy gets (Istio's loadbalancer.go rules), and that
proxies of one locality share the very same EDS bytes."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from api.catalog import CatalogError, instance_from_health_entry, registration_payload
from api.networking.policy import (
    LoadBalancerSettings,
    LocalityLoadBalancerSetting,
    OutlierDetection,
)
from api.resources import Resource, check_text
from pilot.model import MeshSnapshot, Proxy
from pilot.networking.endpoint import LocalityGroup, locality_groups, locality_match
from pilot.networking.traffic_policy import LocalityLb, Policy, locality_lb
from pilot.xds.cds import ClusterGenerator
from pilot.xds.context import PushContext
from pilot.xds.eds import EndpointGenerator
from tests.pilot.fixtures import instance

OUTLIER = OutlierDetection.model_validate({"consecutive5xxErrors": 3})
SHOP = "outbound|9080||shop.default.svc.cluster.local"


def setting(**kw: Any) -> LocalityLoadBalancerSetting:
    return LocalityLoadBalancerSetting.model_validate(kw)


def lb_settings(**kw: Any) -> LoadBalancerSettings:
    return LoadBalancerSettings.model_validate(
        {k: v.model_dump(by_alias=True) if hasattr(v, "model_dump") else v for k, v in kw.items()}
    )


def shape(groups: list[LocalityGroup]) -> list[tuple[str, int, int, list[str]]]:
    """(locality, priority, weight, instance ids) per group."""
    return [(g.locality, g.priority, g.weight, [i.id for i in g.instances]) for g in groups]


# --- where localities come from ------------------------------------------------------------


def _entry(meta: dict[str, str], node: dict[str, Any]) -> dict[str, Any]:
    service = {"ID": "a-1", "Service": "a", "Address": "127.0.0.1", "Port": 1, "Meta": meta}
    return {"Node": {"Node": "n1", **node}, "Service": service}


@pytest.mark.parametrize(
    ("meta", "node", "locality"),
    [
        ({}, {"Datacenter": "dc1"}, "dc1"),  # the region is the datacenter
        ({"zone": "a"}, {"Datacenter": "dc1"}, "dc1/a"),
        ({"zone": "a", "subzone": "r1"}, {"Datacenter": "dc1"}, "dc1/a/r1"),
        ({"region": "us", "zone": "a"}, {"Datacenter": "dc1"}, "us/a"),  # meta wins
        ({}, {"Datacenter": "dc1", "Meta": {"zone": "b", "region": "eu"}}, "eu/b"),  # node meta
        ({"zone": "a"}, {"Datacenter": "dc1", "Meta": {"zone": "b"}}, "dc1/a"),
        ({"zone": "a/b"}, {"Datacenter": "dc1"}, "dc1"),  # not a zone: left out
        ({}, {}, ""),
    ],
)
def test_instance_locality_from_the_catalog(
    meta: dict[str, str], node: dict[str, Any], locality: str
) -> None:
    inst = instance_from_health_entry(_entry(meta, node))
    assert inst is not None
    assert inst.locality == locality
    assert inst.labels == {k: v for k, v in meta.items()}  # meta keys are labels too


def test_register_writes_the_locality_as_meta() -> None:
    body = registration_payload(
        service="a", instance_id="a-1", address="127.0.0.1", port=1, zone="z1", subzone="r1"
    )
    assert body["Meta"]["zone"] == "z1" and body["Meta"]["subzone"] == "r1"
    assert "region" not in body["Meta"]  # the datacenter's, when Pilot reads it
    node = {"Datacenter": "dc2"}
    inst = instance_from_health_entry(_entry(body["Meta"], node))
    assert inst is not None and inst.locality == "dc2/z1/r1"
    with pytest.raises(CatalogError, match="zone"):
        registration_payload(service="a", instance_id="a-1", address="h", port=1, zone="a/b")
    with pytest.raises(CatalogError, match="subzone: needs a zone"):
        registration_payload(service="a", instance_id="a-1", address="h", port=1, subzone="r")
    with pytest.raises(CatalogError, match="zone 'b': the label zone='a' says otherwise"):
        registration_payload(
            service="a", instance_id="a-1", address="h", port=1, labels={"zone": "a"}, zone="b"
        )
    labelled = registration_payload(
        service="a", instance_id="a-1", address="h", port=1, labels={"zone": "a"}, subzone="r"
    )
    inst = instance_from_health_entry(_entry(labelled["Meta"], node))
    assert inst is not None and inst.locality == "dc2/a/r"


@pytest.mark.parametrize(
    ("parts", "locality"),
    [
        ((), ""),
        (("", "", ""), ""),
        (("us", "a", ""), "us/a"),
        (("us", "a", "r1"), "us/a/r1"),
        (("us", "", "r1"), "us//r1"),
        (("us", "a/b", ""), "us"),  # a claim that cannot be a zone
        (("x" * 129, "a", ""), "/a"),
    ],
)
def test_proxy_locality_from_its_node(parts: tuple[str, ...], locality: str) -> None:
    proxy = Proxy.from_node("p", "svc", {}, parts)
    assert proxy.locality == locality
    assert locality in proxy.shape or not locality  # proxies of one locality share bytes


# --- which setting is in force ------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (Policy(), None),  # mesh default (enabled), but no outlier detection: nothing
        (Policy(outlier_detection=OUTLIER), LocalityLb(setting(enabled=True), True)),
        (
            Policy(
                load_balancer=lb_settings(localityLbSetting=setting(enabled=False)),
                outlier_detection=OUTLIER,
            ),
            None,
        ),
        (  # failover rules without outlier detection: Envoy could never fail over
            Policy(
                load_balancer=lb_settings(
                    localityLbSetting=setting(failover=[{"from": "us", "to": "eu"}])
                )
            ),
            None,
        ),
        (  # weights need no outlier detection
            Policy(
                load_balancer=lb_settings(
                    localityLbSetting=setting(distribute=[{"from": "*", "to": {"*": 100}}])
                )
            ),
            LocalityLb(setting(distribute=[{"from": "*", "to": {"*": 100}}]), False),
        ),
        (  # zone-aware is not applied: the mesh default stands in
            Policy(
                load_balancer=lb_settings(zoneAwareLbSetting={"enabled": True}),
                outlier_detection=OUTLIER,
            ),
            LocalityLb(setting(enabled=True), True),
        ),
    ],
)
def test_which_locality_setting_is_in_force(policy: Policy, expected: LocalityLb | None) -> None:
    assert locality_lb(policy) == expected


@pytest.mark.parametrize(
    ("lb", "weighted"),
    [
        (LocalityLb(setting(enabled=True), True), False),
        (LocalityLb(setting(failover=[{"from": "us", "to": "eu"}]), True), True),
        (LocalityLb(setting(failoverPriority=["version"]), True), True),
        (LocalityLb(setting(distribute=[{"from": "*", "to": {"*": 100}}]), False), True),
    ],
)
def test_when_the_cluster_weighs_localities(lb: LocalityLb, weighted: bool) -> None:
    assert lb.weighted is weighted


# --- priorities and weights -----------------------------------------------------------------


def _spread() -> list[Any]:
    return [
        instance("shop", 1, locality="us/a/r1"),
        instance("shop", 2, locality="us/a/r2"),
        instance("shop", 3, locality="us/b"),
        instance("shop", 4, locality="eu/c"),
        instance("shop", 5, locality="ap/d"),
        instance("shop", 6),
    ]


def test_default_failover_priorities_by_locality_match() -> None:
    groups = locality_groups(_spread(), LocalityLb(setting(), True), "us/a/r1")
    assert [(g.locality, g.priority) for g in groups] == [
        ("", 3),
        ("ap/d", 3),
        ("eu/c", 3),
        ("us/a/r1", 0),
        ("us/a/r2", 1),
        ("us/b", 2),
    ]


def test_priorities_have_no_gaps() -> None:
    insts = [instance("shop", 1, locality="us/a"), instance("shop", 2, locality="eu/c")]
    groups = locality_groups(insts, LocalityLb(setting(), True), "us/a")
    assert [g.priority for g in groups] == [1, 0]  # eu/c is 3, compacted to 1


def test_failover_rule_orders_regions() -> None:
    lb = LocalityLb(setting(failover=[{"from": "us", "to": "eu"}]), True)
    groups = locality_groups(_spread(), lb, "us/a/r1")
    assert {g.locality: g.priority for g in groups} == {
        "": 4,
        "ap/d": 4,
        "eu/c": 3,
        "us/a/r1": 0,
        "us/a/r2": 1,
        "us/b": 2,
    }
    # A rule from another region changes nothing for this proxy.
    other = LocalityLb(setting(failover=[{"from": "eu", "to": "ap"}]), True)
    assert {g.priority for g in locality_groups(_spread(), other, "us/a/r1")} == {0, 1, 2, 3}


def test_no_proxy_locality_puts_only_unlocated_endpoints_first() -> None:
    groups = locality_groups(_spread(), LocalityLb(setting(), True), "")
    assert {g.locality: g.priority for g in groups}[""] == 0
    assert {g.priority for g in groups if g.locality} == {1}


def test_failover_priority_labels_and_overrides() -> None:
    insts = [
        instance("shop", 1, locality="us/a", version="v1"),
        instance("shop", 2, locality="us/a", version="v2"),
        instance("shop", 3, locality="us/b", version="v1"),
        instance("shop", 4, locality="us/b", version="v2"),
    ]
    keys = ["version", "topology.kubernetes.io/zone"]
    lb = LocalityLb(setting(failoverPriority=keys), True)
    groups = locality_groups(insts, lb, "us/a", {"version": "v1"})
    assert shape(groups) == [
        ("us/a", 0, 1, ["shop-1"]),
        ("us/a", 2, 1, ["shop-2"]),
        ("us/b", 1, 1, ["shop-3"]),
        ("us/b", 2, 1, ["shop-4"]),
    ]
    # `label=value` names the value to prefer, whatever the proxy's own.
    lb = LocalityLb(setting(failoverPriority=["version=v2"]), True)
    groups = locality_groups(insts, lb, "us/a", {"version": "v1"})
    assert {g.instances[0].id: g.priority for g in groups} == {
        "shop-1": 1,
        "shop-2": 0,
        "shop-3": 1,
        "shop-4": 0,
    }


def test_failover_priority_then_failover_rules() -> None:
    insts = [
        instance("shop", 1, locality="us/a", version="v1"),
        instance("shop", 2, locality="eu/c", version="v1"),
        instance("shop", 3, locality="ap/d", version="v1"),
        instance("shop", 4, locality="us/a", version="v2"),
    ]
    lb = LocalityLb(
        setting(failoverPriority=["version"], failover=[{"from": "us", "to": "ap"}]), True
    )
    groups = locality_groups(insts, lb, "us/a", {"version": "v1"})
    assert {g.instances[0].id: g.priority for g in groups} == {
        "shop-1": 0,  # its version, its locality
        "shop-3": 1,  # its version, the failover region
        "shop-2": 2,  # its version, another region
        "shop-4": 3,  # another version
    }


def test_network_label_first_only_ranks_below_other_matches() -> None:
    insts = [
        instance("shop", 1, locality="us/a", version="v1"),
        instance("shop", 2, locality="us/a", version="v2"),
    ]
    keys = ["topology.istio.io/network", "version"]
    lb = LocalityLb(setting(failoverPriority=keys), True)
    groups = locality_groups(insts, lb, "us/a", {"version": "v1", keys[0]: "net1"})
    # shop-1: network differs (adjust 2), version matches: 2; shop-2: 2 - 1 + 2 = 3.
    assert {g.instances[0].id: g.priority for g in groups} == {"shop-1": 0, "shop-2": 1}


def test_failover_priority_needs_proxy_labels() -> None:
    insts = [instance("shop", 1, version="v1"), instance("shop", 2, version="v2")]
    lb = LocalityLb(setting(failoverPriority=["version"]), True)
    assert shape(locality_groups(insts, lb, "", {})) == [("", 0, 2, ["shop-1", "shop-2"])]


def test_distribute_weights() -> None:
    insts = [
        instance("shop", 1, locality="us/a"),
        instance("shop", 2, locality="us/a"),
        instance("shop", 3, locality="us/b/r1"),
        instance("shop", 4, locality="us/b/r2"),
        instance("shop", 5, locality="us/b/r2"),
        instance("shop", 6, locality="eu/c"),
    ]
    rules = [
        {"from": "eu/*", "to": {"eu/*": 100}},
        {"from": "us/a/*", "to": {"us/a/*": 80, "us/b/*": 20}},
    ]
    lb = LocalityLb(setting(distribute=rules), False)
    assert shape(locality_groups(insts, lb, "us/a/r9")) == [
        ("eu/c", 0, 1, []),  # no share: no endpoints, the locality kept
        ("us/a", 0, 80, ["shop-1", "shop-2"]),
        ("us/b/r1", 0, 7, ["shop-3"]),  # 20 spread by size, rounded up
        ("us/b/r2", 0, 14, ["shop-4", "shop-5"]),
    ]
    # A proxy no rule's `from` holds keeps the plain weights.
    assert [g.weight for g in locality_groups(insts, lb, "ap/x")] == [1, 2, 1, 2]


@pytest.mark.parametrize(
    ("rule", "matches"),
    [
        ("*", True),
        ("us", True),
        ("us/*", True),
        ("us/a", True),
        ("us/a/*", True),
        ("us/a/r1", True),
        ("us/b", False),
        ("eu", False),
        ("us/a/r2", False),
    ],
)
def test_locality_match(rule: str, matches: bool) -> None:
    assert locality_match(("us", "a", "r1"), rule) is matches


# --- on the wire: per-locality EDS, shared between proxies of one locality ----------------


RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: default}
spec:
  host: shop
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {localityLbSetting: {enabled: false}}
"""


def _context(rule: str = RULE) -> PushContext:
    checked = check_text(rule, "rule.yaml")
    config: list[Resource] = [c.resource for c in checked if c.resource is not None]
    insts = (
        instance("shop", 1, locality="us/a"),
        instance("shop", 2, locality="us/b", version="v2"),
        instance("ratings", 3, locality="us/a"),
    )
    by_service: dict[str, tuple[Any, ...]] = {}
    for inst in insts:
        by_service[inst.service] = (*by_service.get(inst.service, ()), inst)
    return PushContext.build(MeshSnapshot.build(1, by_service, config))


def _proxy(name: str, locality: str) -> Proxy:
    return Proxy(id=name, service="client", outbound_port=15001, locality=locality)


def test_proxies_of_one_locality_share_endpoint_bytes() -> None:
    ctx = _context()
    gen = EndpointGenerator()
    names = frozenset(
        {SHOP, SHOP.replace("||", "|v2|"), "outbound|9080||ratings.default.svc.cluster.local"}
    )
    a1, a2, b = (
        {r.name: r for r in gen.generate(ctx, _proxy(n, loc), names, None)}
        for n, loc in (("a1", "us/a"), ("a2", "us/a"), ("b", "us/b"))
    )
    assert a1[SHOP] is a2[SHOP]  # built once for the locality
    assert a1[SHOP].value_bytes != b[SHOP].value_bytes  # priorities relative to the proxy
    for name in names - {SHOP}:  # locality LB off for v2, no rule for ratings: shared by all
        assert a1[name] is b[name] is ctx.assignments[name]


def test_weighted_clusters_say_so_in_cds() -> None:
    rule = RULE.replace(
        "outlierDetection: {consecutive5xxErrors: 3}",
        "outlierDetection: {consecutive5xxErrors: 3}\n"
        "    loadBalancer: {localityLbSetting: {failover: [{from: us, to: eu}]}}",
    )
    ctx = _context(rule)
    clusters = {
        r.name: r for r in ClusterGenerator().generate(ctx, _proxy("a", ""), frozenset(), None)
    }

    def weighted(name: str) -> bool:
        c = cluster_pb2.Cluster.FromString(clusters[name].value_bytes)
        return c.common_lb_config.HasField("locality_weighted_lb_config")

    assert weighted(SHOP)
    assert not weighted(SHOP.replace("||", "|v2|"))
