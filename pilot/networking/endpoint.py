"""Endpoint builders (EDS): a service's healthy instances, or a subset's, by locality.

Instances are grouped per locality (Istio's `region/zone/subzone` label), each
group a LocalityLbEndpoints with its Envoy `locality`. When locality load
balancing is in force for the cluster (`traffic_policy.locality_lb`), the
groups get priorities or weights relative to the calling proxy's locality, by
the rules of Istio's pilot/pkg/networking/core/loadbalancer: `distribute`
weights, else (only with outlier detection, which lets Envoy see a priority go
unhealthy) `failoverPriority` labels and `failover` between regions, else the
default failover: same region/zone/subzone 0, same region/zone 1, same region 2,
anywhere else 3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import struct_pb2

from api.catalog import Instance, locality_label
from api.networking.policy import Distribute, Failover
from api.networking.policy_checks import UNIX_PREFIX
from pilot.model import Service
from pilot.networking import names
from pilot.networking.traffic_policy import LocalityLb

__all__ = [
    "LocalityGroup",
    "load_assignment",
    "locality_groups",
    "locality_key",
    "locality_match",
    "split_locality",
]

# The labels Istio adds to proxies and endpoints from their locality (failoverPriority
# names them like any other label).
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
NETWORK_LABEL = "topology.istio.io/network"

Locality = tuple[str, str, str]


def split_locality(label: str) -> Locality:
    """Istio's SplitLocalityLabel: `region/zone/subzone`, parts past the third ignored."""
    region, zone, subzone = (*label.split("/"), "", "")[:3]
    return region, zone, subzone


def locality_match(locality: Locality, rule: str) -> bool:
    """Does a locality fall under a rule's `region[/zone[/subzone]]`, `*` matching any?"""
    region, zone, subzone = split_locality(rule)
    return (
        region in ("*", locality[0])
        and zone in ("*", "", locality[1])
        and subzone in ("*", "", locality[2])
    )


def _lb_priority(proxy: Locality, endpoints: Locality) -> int:
    """0: same region, zone and subzone; 1: same region and zone; 2: same region; else 3."""
    if proxy[0] != endpoints[0]:
        return 3
    if proxy[1] != endpoints[1]:
        return 2
    return 0 if proxy[2] == endpoints[2] else 1


@dataclass(frozen=True, slots=True)
class LocalityGroup:
    """One LocalityLbEndpoints before it is built: its instances, priority and weight."""

    locality: str
    instances: tuple[Instance, ...]
    priority: int = 0
    weight: int = 0  # the locality's load_balancing_weight (sent when the cluster weighs)


def _compact(groups: list[LocalityGroup]) -> list[LocalityGroup]:
    """Priorities renumbered 0..N in order: Envoy needs them without gaps."""
    rank = {p: i for i, p in enumerate(sorted({g.priority for g in groups}))}
    return [replace(g, priority=rank[g.priority]) for g in groups]


def _weights(
    groups: list[LocalityGroup], proxy: Locality, distribute: Sequence[Distribute]
) -> list[LocalityGroup]:
    """The first rule whose `from` holds the proxy: each `to` locality's share spread over
    the groups it matches in proportion to their size (rounded up); groups no `to` matches
    keep their locality but lose their endpoints."""
    rule = next((d for d in distribute if locality_match(proxy, d.from_ or "")), None)
    if rule is None:
        return groups
    out = list(groups)
    unmatched = set(range(len(groups)))
    for target, share in (rule.to or {}).items():
        matched = [
            i for i in sorted(unmatched) if locality_match(split_locality(out[i].locality), target)
        ]
        unmatched.difference_update(matched)
        total = sum(out[i].weight for i in matched)
        for i in matched:
            weight = out[i].weight * share / total
            if weight > 0:
                out[i] = replace(out[i], weight=math.ceil(weight))
    for i in unmatched:
        out[i] = replace(out[i], instances=())
    return out


def _failover(
    groups: list[LocalityGroup], proxy: Locality, failover: Sequence[Failover]
) -> list[LocalityGroup]:
    """Priorities by locality match; with a `failover` rule from the proxy's region, other
    regions than its `to` come after that one. Composed with earlier priorities."""
    out = []
    for g in groups:
        locality = split_locality(g.locality)
        priority = _lb_priority(proxy, locality)
        if priority == 3:
            rule = next((f for f in failover if f.from_ == proxy[0]), None)
            if rule is not None and locality[0] != rule.to:
                priority = 4
        out.append(replace(g, priority=g.priority * 5 + priority))
    return _compact(out)


def _topology_labels(labels: Mapping[str, str], locality: str) -> dict[str, str]:
    """Labels with the locality's topology labels added, as Istio augments them."""
    out = dict(labels)
    parts = split_locality(locality)
    for key, value in zip((REGION_LABEL, ZONE_LABEL, SUBZONE_LABEL), parts, strict=True):
        if value:
            out[key] = value
    return out


def _priority_labels(keys: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """failoverPriority entries: label names, and the values given as `name=value`."""
    labels, values = [], {}
    for entry in keys:
        parts = entry.split("=")
        labels.append(parts[0])
        if len(parts) == 2:
            values[parts[0]] = parts[1]
    return labels, values


def _failover_priority(
    groups: list[LocalityGroup], proxy_labels: Mapping[str, str], keys: Sequence[str]
) -> list[LocalityGroup]:
    """Each group split by how many leading failoverPriority labels an instance shares
    with the proxy (or the value given): all of them first. A mismatch of the network
    label, when it comes first, only ranks below every other match."""
    if not proxy_labels:
        return groups
    labels, values = _priority_labels(keys)
    lowest = len(keys)
    network_first = bool(keys) and keys[0] == NETWORK_LABEL
    out = []
    for g in groups:
        by_priority: dict[int, list[Instance]] = {}
        for inst in g.instances:
            own = _topology_labels(inst.labels, inst.locality)
            priority, adjust = 0, 0
            for j, label in enumerate(labels):
                wanted = values[label] if label in values else proxy_labels.get(label, "")
                if wanted != own.get(label, ""):
                    if j == 0 and network_first:
                        adjust = lowest
                        continue
                    priority = lowest - j
                    break
            by_priority.setdefault(priority + adjust, []).append(inst)
        for priority in sorted(by_priority):
            insts = tuple(by_priority[priority])
            out.append(LocalityGroup(g.locality, insts, priority, len(insts)))
    return _compact(out)


def _fp_keys(lb: LocalityLb) -> Sequence[str]:
    """The failoverPriority labels in force: only without `distribute`, with failover."""
    s = lb.setting
    return (s.failover_priority or []) if lb.failover and not s.distribute else []


def locality_groups(
    instances: Sequence[Instance],
    lb: LocalityLb | None = None,
    proxy_locality: str = "",
    proxy_labels: Mapping[str, str] | None = None,
) -> list[LocalityGroup]:
    """Instances by locality (in label order), with the priorities and weights that `lb`
    gives them for a proxy in `proxy_locality` with `proxy_labels`."""
    by_locality: dict[str, list[Instance]] = {}
    for inst in instances:  # one group per Envoy locality: a longer label's rest is dropped
        by_locality.setdefault(locality_label(*split_locality(inst.locality)), []).append(inst)
    groups = [
        LocalityGroup(loc, tuple(insts), weight=len(insts))
        for loc, insts in sorted(by_locality.items())
    ]
    if lb is None:
        return groups
    proxy = split_locality(proxy_locality)
    s = lb.setting
    if s.distribute:
        return _weights(groups, proxy, s.distribute)
    if not lb.failover:
        return groups
    if keys := _fp_keys(lb):
        groups = _failover_priority(
            groups, _topology_labels(proxy_labels or {}, proxy_locality), keys
        )
        return _failover(groups, proxy, s.failover) if s.failover else groups
    return _failover(groups, proxy, s.failover or [])


def locality_key(
    lb: LocalityLb, proxy_locality: str, proxy_labels: Mapping[str, str]
) -> tuple[object, ...]:
    """What of a proxy the cluster's endpoints depend on: proxies with the same key share
    them (Istio's EDS cache key: the locality, and the failoverPriority label values)."""
    keys = _fp_keys(lb)
    if not keys:
        return (proxy_locality,)
    labels = _topology_labels(proxy_labels, proxy_locality)
    return (proxy_locality, bool(labels), tuple(labels.get(k.split("=")[0], "") for k in keys))


def _address(address: str, port: int) -> address_pb2.Address:
    """An IP and port, or a unix socket path (a leading '@' names an abstract socket)."""
    if address.startswith(UNIX_PREFIX):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=address.removeprefix(UNIX_PREFIX)))
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def _lb_endpoint(
    address: str, port: int, labels: Mapping[str, str], tls_mode: str = "disabled"
) -> endpoint_components_pb2.LbEndpoint:
    metadata = base_pb2.Metadata()
    if tls_mode == "istio":  # picked up by the cluster's transport_socket_matches (auto mTLS)
        metadata.filter_metadata["envoy.transport_socket_match"].update({"tlsMode": "istio"})
    if labels:
        fields = struct_pb2.Struct()
        fields.update(dict(labels))
        metadata.filter_metadata["istio"].CopyFrom(fields)
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=_address(address, port)),
        health_status=health_check_pb2.HEALTHY,
        metadata=metadata,
    )


def _locality_endpoints(
    group: LocalityGroup, weighted: bool
) -> endpoint_components_pb2.LocalityLbEndpoints:
    out = endpoint_components_pb2.LocalityLbEndpoints(
        lb_endpoints=[
            _lb_endpoint(i.address, i.port, i.labels, i.tls_mode) for i in group.instances
        ],
        priority=group.priority,
    )
    if group.locality:
        region, zone, subzone = split_locality(group.locality)
        out.locality.CopyFrom(base_pb2.Locality(region=region, zone=zone, sub_zone=subzone))
    if weighted:
        out.load_balancing_weight.value = group.weight
    return out


def load_assignment(
    service: Service,
    subset: str = "",
    subset_labels: Mapping[str, str] | None = None,
    lb: LocalityLb | None = None,
    proxy_locality: str = "",
    proxy_labels: Mapping[str, str] | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """Instances whose labels include every subset label (all of them without a subset),
    by locality; with `lb`, prioritized and weighted for a proxy (see `locality_groups`).

    An instance without an address (a ServiceEntry endpoint that only names a
    network, reached through that network's gateway) has nothing Envoy can
    dial here: it is left out rather than sent as an address Envoy rejects.
    """
    wanted = dict(subset_labels or {})
    chosen = [
        inst
        for inst in service.instances
        if inst.address and all(inst.labels.get(k) == v for k, v in wanted.items())
    ]
    groups = locality_groups(chosen, lb, proxy_locality, proxy_labels)
    weighted = lb is not None and lb.weighted
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=names.outbound_cluster(service.key, service.port, subset),
        endpoints=[_locality_endpoints(g, weighted) for g in groups]
        or [endpoint_components_pb2.LocalityLbEndpoints()],
    )
