"""Who a proxy accepts as the server: ServiceEntry subjectAltNames and endpoint service
accounts, `location`, and DestinationRule caCrl, as Istio translates them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from api.networking.policy import ClientTLSSettings
from api.resources import Resource, check_text
from pilot.model import MeshConfig, MeshSnapshot, Proxy, ServiceKey
from pilot.networking import cluster
from pilot.networking.tls_files import envoy_can_load
from pilot.networking.traffic_policy import Policy, apply_policy, san_matchers
from pilot.xds.cds import ClusterGenerator
from pilot.xds.context import PushContext
from tests.pilot.fixtures import instance

SDS = ("127.0.0.1:15013", "/var/run/mesh/token", "/var/run/mesh/root-cert.pem")
GOLDEN_CERTS = "tests/pilot/golden/certs"
CRL = "tests/pilot/golden/dr-tls-ca-crl/crl.pem"
SAN = common_pb2.SubjectAltNameMatcher


def config(*docs: dict[str, Any]) -> list[Resource]:
    checked = check_text(yaml.safe_dump_all(docs), "test.yaml")
    assert not [str(i) for c in checked for i in c.errors]
    return [c.resource for c in checked if c.resource is not None]


def service_entry(name: str, **spec: Any) -> dict[str, Any]:
    base = {
        "hosts": [f"{name}.vm.internal"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "STATIC",
    }
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {**base, **spec},
    }


def destination_rule(host: str, tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": host.split(".")[0], "namespace": "default"},
        "spec": {"host": host, "trafficPolicy": {"tls": tls}},
    }


def clusters(*docs: dict[str, Any], trust_domain: str = "cluster.local") -> dict[str, Any]:
    """CDS as a proxy with a mesh identity gets it, by cluster name."""
    snap = MeshSnapshot.build(
        1,
        {"reviews": (instance("reviews", 1),)},
        config(*docs),
        MeshConfig(trust_domain=trust_domain),
    )
    proxy = Proxy(id="p", service="productpage", outbound_port=15001, sds=SDS)
    out = {}
    for r in ClusterGenerator().generate(PushContext.build(snap), proxy, frozenset(), None):
        c = cluster_pb2.Cluster.FromString(r.value_bytes)
        out[c.name] = c
    return out


def upstream(c: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext:
    """The TLS a cluster originates: its socket, or its tlsMode-istio match."""
    socket = c.transport_socket if c.HasField("transport_socket") else None
    for match in c.transport_socket_matches:
        if match.name == "tlsMode-istio":
            socket = match.transport_socket
    assert socket is not None, f"{c.name} originates no TLS"
    ctx = tls_pb2.UpstreamTlsContext()
    socket.typed_config.Unpack(ctx)
    return ctx


def sans(c: cluster_pb2.Cluster) -> list[tuple[str, str]]:
    common = upstream(c).common_tls_context
    if common.HasField("combined_validation_context"):
        validation = common.combined_validation_context.default_validation_context
    else:
        validation = common.validation_context
    return [
        (SAN.SanType.Name(m.san_type), m.matcher.exact)
        for m in validation.match_typed_subject_alt_names
    ]


# --- ServiceEntry subjectAltNames and endpoints[].serviceAccount ---------------------------------


def test_entry_sans_and_endpoint_accounts_are_checked_for_mesh_mtls() -> None:
    got = clusters(
        service_entry(
            "db",
            location="MESH_INTERNAL",
            subjectAltNames=["spiffe://cluster.local/ns/ops/sa/db-admin"],
            endpoints=[{"address": "192.0.2.1", "serviceAccount": "db"}],
        ),
        trust_domain="example.org",
    )
    assert sans(got["outbound|80||db.vm.internal"]) == [
        ("URI", "spiffe://cluster.local/ns/ops/sa/db-admin"),
        # the endpoint's account, in the entry's namespace and the mesh's trust domain
        ("URI", "spiffe://example.org/ns/default/sa/db"),
    ]


def test_destination_rule_sans_win_over_the_entrys() -> None:
    got = clusters(
        service_entry(
            "db",
            subjectAltNames=["spiffe://cluster.local/ns/default/sa/db"],
            endpoints=[{"address": "192.0.2.1", "serviceAccount": "db"}],
        ),
        destination_rule(
            "db.vm.internal", {"mode": "ISTIO_MUTUAL", "subjectAltNames": ["db.internal"]}
        ),
    )
    assert sans(got["outbound|80||db.vm.internal"]) == [("DNS", "db.internal")]


def test_an_entry_naming_no_identity_is_checked_against_the_mesh_root_alone() -> None:
    got = clusters(
        service_entry("db", endpoints=[{"address": "192.0.2.1"}]),
        destination_rule("db.vm.internal", {"mode": "ISTIO_MUTUAL"}),
    )
    c = got["outbound|80||db.vm.internal"]
    assert sans(c) == []
    validation = upstream(c).common_tls_context.combined_validation_context
    assert validation.validation_context_sds_secret_config.name == "ROOTCA"


def test_entry_sans_apply_to_tls_a_rule_originates() -> None:
    got = clusters(
        service_entry("api", subjectAltNames=["api.example.com"], resolution="DNS"),
        destination_rule(
            "api.vm.internal", {"mode": "SIMPLE", "caCertificates": f"{GOLDEN_CERTS}/ca.pem"}
        ),
    )
    assert sans(got["outbound|80||api.vm.internal"]) == [("DNS", "api.example.com")]


def test_catalog_services_keep_their_instances_identities() -> None:
    got = clusters()
    assert sans(got["outbound|9080||reviews.default.svc.cluster.local"]) == [
        ("URI", "spiffe://cluster.local/ns/default/sa/default")
    ]


@pytest.mark.parametrize(
    ("name", "san_type"),
    [
        ("spiffe://cluster.local/ns/a/sa/b", "URI"),
        ("urn:example:service", "URI"),
        ("api.example.com", "DNS"),
        ("*.example.com", "DNS"),
        ("192.0.2.9", "IP_ADDRESS"),
        ("2001:db8::9", "IP_ADDRESS"),
        ("ops@example.com", "EMAIL"),
    ],
)
def test_each_name_is_matched_as_the_one_san_type_its_form_allows(name: str, san_type: str) -> None:
    [matcher] = san_matchers([name, name])
    assert (SAN.SanType.Name(matcher.san_type), matcher.matcher.exact) == (san_type, name)


def test_server_identities_precedence() -> None:
    snap = MeshSnapshot.build(
        1,
        {},
        config(
            service_entry(
                "db",
                subjectAltNames=["b.example", "a.example"],
                endpoints=[{"address": "192.0.2.1", "serviceAccount": "db"}],
            )
        ),
    )
    svc = snap.services[ServiceKey("db.vm.internal", "default", "db.vm.internal", 80)]
    assert cluster.server_identities(svc, None, "cluster.local") == (
        "a.example",
        "b.example",
        "spiffe://cluster.local/ns/default/sa/db",
    )
    empty = ClientTLSSettings.model_validate({"mode": "ISTIO_MUTUAL", "subjectAltNames": []})
    assert cluster.server_identities(svc, empty, "x") == svc.subject_alt_names
    own = ClientTLSSettings.model_validate({"mode": "ISTIO_MUTUAL", "subjectAltNames": ["z"]})
    assert cluster.server_identities(svc, own, "x") == ("z",)


# --- location, and which endpoints terminate mesh mTLS --------------------------------------------


ENDPOINTS = [
    {"address": "192.0.2.1", "serviceAccount": "vm"},
    {"address": "192.0.2.2", "labels": {"security.istio.io/tlsMode": "istio"}},
    {"address": "192.0.2.3", "serviceAccount": "vm", "labels": {"security.istio.io/tlsMode": "x"}},
    {"address": "192.0.2.4"},
]


def test_endpoints_terminate_mesh_mtls_by_label_else_service_account() -> None:
    snap = MeshSnapshot.build(1, {}, config(service_entry("db", endpoints=ENDPOINTS)))
    svc = snap.services[ServiceKey("db.vm.internal", "default", "db.vm.internal", 80)]
    assert [i.tls_mode for i in svc.instances] == ["istio", "istio", "disabled", "disabled"]


@pytest.mark.parametrize(
    ("location", "automatic"),
    [("MESH_INTERNAL", True), ("MESH_EXTERNAL", False), (None, False)],
)
def test_only_mesh_internal_entries_get_automatic_mtls(
    location: str | None, automatic: bool
) -> None:
    spec: dict[str, Any] = {"endpoints": ENDPOINTS}
    if location is not None:
        spec["location"] = location
    c = clusters(service_entry("db", **spec))["outbound|80||db.vm.internal"]
    assert [m.name for m in c.transport_socket_matches] == (
        ["tlsMode-istio", "tlsMode-disabled"] if automatic else []
    )
    assert not c.HasField("transport_socket")


def test_istio_mutual_applies_to_mesh_external_entries_too() -> None:
    c = clusters(
        service_entry("db", location="MESH_EXTERNAL", endpoints=ENDPOINTS),
        destination_rule("db.vm.internal", {"mode": "ISTIO_MUTUAL"}),
    )["outbound|80||db.vm.internal"]
    assert c.transport_socket.name == "envoy.transport_sockets.tls"
    assert sans(c) == [("URI", "spiffe://cluster.local/ns/default/sa/vm")]


# --- DestinationRule caCrl -----------------------------------------------------------------------


def simple(**tls: Any) -> dict[str, Any]:
    return {"mode": "SIMPLE", "caCertificates": f"{GOLDEN_CERTS}/ca.pem", **tls}


def test_ca_crl_goes_next_to_the_ca() -> None:
    c = clusters(service_entry("api"), destination_rule("api.vm.internal", simple(caCrl=CRL)))[
        "outbound|80||api.vm.internal"
    ]
    validation = upstream(c).common_tls_context.validation_context
    assert validation.crl.filename == CRL
    assert validation.trusted_ca.filename == f"{GOLDEN_CERTS}/ca.pem"


def test_ca_crl_with_istio_mutual_is_checked_with_the_mesh_root() -> None:
    c = clusters(destination_rule("reviews", {"mode": "ISTIO_MUTUAL", "caCrl": CRL}))[
        "outbound|9080||reviews.default.svc.cluster.local"
    ]
    combined = upstream(c).common_tls_context.combined_validation_context
    assert combined.default_validation_context.crl.filename == CRL
    assert combined.validation_context_sds_secret_config.name == "ROOTCA"


API = ("api.vm.internal", "outbound|80||api.vm.internal")
REVIEWS = ("reviews", "outbound|9080||reviews.default.svc.cluster.local")


@pytest.mark.parametrize(
    ("host", "tls"),
    [
        (API, simple(caCrl="/nonexistent/crl.pem")),
        (API, simple(caCrl="/proc/self/status")),  # Envoy refuses /proc paths
        (API, simple(caCrl="tests/pilot/golden")),  # a directory
        (API, simple(caCrl="pyproject.toml")),  # a file, but no revocation list
        (API, {"mode": "SIMPLE", "caCertificates": "pyproject.toml"}),  # no certificate
        (API, simple(caCrl=f"{GOLDEN_CERTS}/ca.pem")),  # a certificate, not a CRL
        (REVIEWS, {"mode": "ISTIO_MUTUAL", "caCrl": "/nonexistent/crl.pem"}),
    ],
)
def test_tls_files_envoy_cannot_load_give_a_cluster_with_no_endpoints(
    host: tuple[str, str], tls: dict[str, Any]
) -> None:
    c = clusters(service_entry("api"), destination_rule(host[0], tls))[host[1]]
    assert c.type == cluster_pb2.Cluster.STATIC
    assert not c.load_assignment.endpoints
    assert not c.HasField("transport_socket") and not c.transport_socket_matches


def test_envoy_can_load() -> None:
    assert envoy_can_load(CRL)
    assert not envoy_can_load("/nonexistent")
    assert not envoy_can_load("/dev/null")
    assert not envoy_can_load("/proc/self/status")


def test_apply_policy_leaves_the_crl_out_when_nothing_is_verified() -> None:
    # Refused by validation; should it reach the builder, Istio's reading: nothing verified.
    c = cluster_pb2.Cluster(name="x")
    tls = ClientTLSSettings.model_validate(
        {"mode": "SIMPLE", "insecureSkipVerify": True, "caCrl": "/nonexistent"}
    )
    assert apply_policy(c, Policy(tls=tls), "x")
    ctx = tls_pb2.UpstreamTlsContext()
    c.transport_socket.typed_config.Unpack(ctx)
    assert not ctx.common_tls_context.HasField("validation_context")
