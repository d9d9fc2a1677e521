"""WorkloadEntries as ServiceEntry endpoints, picked by the entry's workloadSelector as
Istio's registry picks them; config changes to them push like any config."""

from __future__ import annotations

from typing import Any

import yaml
from envoy.config.endpoint.v3 import endpoint_pb2

from api.catalog import Instance
from api.resources import Resource, check_text
from pilot.model import MeshSnapshot, Service, ServiceKey
from pilot.xds.context import PushContext, diff
from pilot.xds.eds import EndpointGenerator
from tests.pilot.fixtures import instance, sidecar

HOST = "api.vm.internal"
CLUSTER = f"outbound|80||{HOST}"


def service_entry(
    selector: dict[str, str] | None = None, namespace: str = "default", **spec: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "hosts": [HOST],
        "location": "MESH_INTERNAL",
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "STATIC",
        "workloadSelector": {"labels": selector if selector is not None else {"app": "vm"}},
    }
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "vm", "namespace": namespace},
        "spec": {**base, **spec},
    }


def workload_entry(
    name: str, namespace: str = "default", meta_labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if meta_labels:
        metadata["labels"] = meta_labels
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": metadata,
        "spec": {"labels": {"app": "vm"}, **spec},
    }


def config(*docs: dict[str, Any]) -> list[Resource]:
    checked = check_text(yaml.safe_dump_all(docs), "test.yaml")
    assert not [str(i) for c in checked for i in c.errors]
    return [c.resource for c in checked if c.resource is not None]


def build(*docs: dict[str, Any], version: int = 1) -> MeshSnapshot:
    catalog = {"reviews": (instance("reviews", 1),)}
    return MeshSnapshot.build(version, catalog, config(*docs))


def service(snap: MeshSnapshot, port: int = 80, host: str = HOST) -> Service:
    return snap.services[ServiceKey(host, "default", host=host, port=port)]


def endpoints(snap: MeshSnapshot) -> list[Instance]:
    return list(service(snap).instances)


def test_selected_entries_become_endpoints_with_their_address_labels_and_identity() -> None:
    snap = build(
        service_entry(),
        workload_entry(
            "vm-1",
            address="192.0.2.1",
            labels={"app": "vm", "version": "v1"},
            serviceAccount="vm-sa",
        ),
    )
    [ep] = endpoints(snap)
    assert (ep.address, ep.port, ep.service_port, ep.namespace) == ("192.0.2.1", 80, 80, "default")
    assert dict(ep.labels) == {"app": "vm", "version": "v1"}
    assert ep.service_account == "vm-sa"
    assert ep.tls_mode == "istio"  # a service account and no tlsMode label: Istio's rule
    assert service(snap).subject_alt_names == ("spiffe://cluster.local/ns/default/sa/vm-sa",)


def test_selection_is_by_labels_in_the_entry_namespace_metadata_labels_winning() -> None:
    snap = build(
        service_entry(selector={"app": "vm", "version": "v2"}),
        # spec says v1, metadata says v2: Istio reads the metadata's
        workload_entry(
            "b",
            address="192.0.2.2",
            meta_labels={"version": "v2"},
            labels={"app": "vm", "version": "v1"},
        ),
        workload_entry("a", address="192.0.2.1", labels={"app": "vm", "version": "v2"}),
        workload_entry("c", address="192.0.2.3", labels={"app": "vm", "version": "v1"}),
        workload_entry(
            "d", namespace="other", address="192.0.2.4", labels={"app": "vm", "version": "v2"}
        ),
    )
    assert [(e.address, e.labels["version"]) for e in endpoints(snap)] == [
        ("192.0.2.1", "v2"),  # by name, as Istio orders them
        ("192.0.2.2", "v2"),
    ]


def test_an_empty_selector_selects_every_entry_of_the_namespace() -> None:
    snap = build(
        service_entry(selector={}),
        workload_entry("a", address="192.0.2.1", labels={"x": "y"}),
        workload_entry("b", address="192.0.2.2", labels={}),
    )
    assert [e.address for e in endpoints(snap)] == ["192.0.2.1", "192.0.2.2"]


def test_port_is_the_entry_port_of_that_name_else_target_port_else_number() -> None:
    ports = [
        {"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 8080},
        {"number": 81, "name": "admin", "protocol": "HTTP"},
    ]
    snap = build(
        service_entry(ports=ports),
        workload_entry("vm-1", address="192.0.2.1", ports={"http": 9090}),
        workload_entry("vm-2", address="192.0.2.2"),
    )
    assert [e.port for e in service(snap, 80).instances] == [9090, 8080]
    assert [e.port for e in service(snap, 81).instances] == [81, 81]


def test_tls_mode_label_wins_and_every_service_account_is_a_server_name() -> None:
    snap = build(
        service_entry(),
        workload_entry(
            "plain",
            address="192.0.2.1",
            serviceAccount="legacy",
            labels={"app": "vm", "security.istio.io/tlsMode": "disabled"},
        ),
        workload_entry(
            "labelled",
            address="192.0.2.2",
            labels={"app": "vm", "security.istio.io/tlsMode": "istio"},
        ),
        workload_entry("bare", address="192.0.2.3"),
    )
    modes = {e.address: e.tls_mode for e in endpoints(snap)}
    assert modes == {"192.0.2.1": "disabled", "192.0.2.2": "istio", "192.0.2.3": "disabled"}
    assert service(snap).subject_alt_names == ("spiffe://cluster.local/ns/default/sa/legacy",)


def test_locality_from_the_field_else_the_locality_label() -> None:
    snap = build(
        service_entry(),
        workload_entry("a", address="192.0.2.1", locality="us-east/zone-a/"),
        workload_entry(
            "b",
            address="192.0.2.2",
            labels={"app": "vm", "topology.istio.io/locality": "eu-west.zone-b"},
        ),
        workload_entry("c", address="192.0.2.3", labels={"app": "vm", "istio-locality": "ap.z"}),
        workload_entry("d", address="192.0.2.4"),
    )
    assert [e.locality for e in endpoints(snap)] == ["us-east/zone-a", "eu-west/zone-b", "ap/z", ""]


def test_address_rules_no_address_host_names_and_unix_sockets() -> None:
    static = build(
        service_entry(),
        workload_entry("a-ip", address="192.0.2.1"),
        workload_entry("b-net", network="vm-net"),  # another network's: no address here
        workload_entry("c-name", address="vm.example.internal"),  # DNS entries only
        workload_entry("d-unix", address="unix:///var/run/vm.sock"),
    )
    assert [e.address for e in endpoints(static)] == ["192.0.2.1", ""]
    # The one without an address is left out of EDS, as a ServiceEntry endpoint is.
    ctx = PushContext.build(static)
    [cla] = [
        endpoint_pb2.ClusterLoadAssignment.FromString(r.value_bytes)
        for r in EndpointGenerator().generate(ctx, sidecar(), frozenset({CLUSTER}), None)
    ]
    assert [e.endpoint.address.socket_address.address for e in cla.endpoints[0].lb_endpoints] == [
        "192.0.2.1"
    ]
    dns = build(
        service_entry(resolution="DNS"),
        workload_entry("c-name", address="vm.example.internal"),
        workload_entry("d-unix", address="unix:///var/run/vm.sock"),
    )
    assert service(dns).resolution == "DNS"
    assert [e.address for e in endpoints(dns)] == ["vm.example.internal"]


def test_a_dns_entry_whose_selector_picks_nothing_has_no_endpoints_not_its_host() -> None:
    snap = build(service_entry(resolution="DNS"))
    assert endpoints(snap) == []
    assert service(snap).resolution == "EDS"  # an empty cluster: 503, as Istio's missing one
    # Nothing Envoy can dial is the same: an entry on another network has no address.
    snap = build(service_entry(resolution="DNS"), workload_entry("a", network="vm-net"))
    assert [e.address for e in endpoints(snap)] == [""]
    assert service(snap).resolution == "EDS"


def test_resolution_none_selects_nothing() -> None:
    snap = build(service_entry(resolution="NONE"), workload_entry("a", address="192.0.2.1"))
    assert endpoints(snap) == []


def test_inline_endpoints_keep_their_rules() -> None:
    entry = service_entry(
        endpoints=[{"address": "192.0.2.9", "serviceAccount": "inline", "locality": "r/z"}]
    )
    del entry["spec"]["workloadSelector"]
    snap = build(entry, workload_entry("a", address="192.0.2.1"))
    [ep] = endpoints(snap)
    assert (ep.address, ep.tls_mode, ep.locality) == ("192.0.2.9", "istio", "r/z")


def test_a_catalog_service_does_not_take_entries_with_its_labels() -> None:
    # Istio's Kubernetes Services select WorkloadEntries; catalog services have no selector.
    snap = build(workload_entry("a", address="192.0.2.1", labels={"version": "v1"}))
    reviews = snap.services[ServiceKey("reviews", "default")]
    assert [i.address for i in reviews.instances] == ["10.0.0.1"]


def test_adding_and_deleting_an_entry_is_a_config_push_that_changes_eds() -> None:
    before = build(service_entry(), workload_entry("vm-1", address="192.0.2.1"), version=1)
    after = build(service_entry(), version=2)
    change = diff(before, after)
    assert change is not None and change.full
    assert endpoints(after) == []
    back = build(service_entry(), workload_entry("vm-1", address="192.0.2.1"), version=3)
    change = diff(after, back)
    assert change is not None and change.full
    assert [e.address for e in endpoints(back)] == ["192.0.2.1"]
