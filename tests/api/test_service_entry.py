"""ServiceEntry: schema and semantic rules, each error at its field path."""

from __future__ import annotations

from typing import Any

import pytest

from api.resources import check_document, check_text
from tests.api.helpers import CORPUS, check, corpus_documents, errors, other_warnings, warnings

HOSTS = ["api.example.com"]
HTTP = {"number": 80, "name": "http", "protocol": "HTTP"}
TCP = {"number": 3306, "name": "tcp", "protocol": "TCP"}


def se(**spec: Any) -> dict[str, Any]:
    return {"hosts": HOSTS, **spec}


def static(*endpoints: Any, ports: Any = None) -> dict[str, Any]:
    return se(resolution="STATIC", ports=ports or [HTTP], endpoints=list(endpoints))


@pytest.mark.skipif(not CORPUS.exists(), reason="shared/corpus is not beside the repo")
def test_corpus_examples_are_judged_as_istio_does() -> None:
    documents = corpus_documents("ServiceEntry")
    assert len(documents) >= 25
    for where, doc in documents:
        expected_error = doc.pop("_err", None)
        result = check_document(doc, where)
        if expected_error is None:
            assert result.ok, f"{where}: {errors(result)}"
        else:
            assert not result.ok, f"{where} should be refused ({expected_error})"


def test_full_spec_is_accepted() -> None:
    spec = {
        "hosts": ["db.example.com"],
        "addresses": ["10.1.0.0/16"],
        "ports": [{"number": 3306, "protocol": "TCP", "name": "mysql", "targetPort": 13306}],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "endpoints": [
            {
                "address": "10.1.2.3",
                "ports": {"mysql": 3307},
                "labels": {"version": "v1"},
                "network": "net1",
                "locality": "us-west/zone1",
                "weight": 10,
                "serviceAccount": "db",
            }
        ],
        "exportTo": ["."],
        "subjectAltNames": ["spiffe://cluster.local/ns/db/sa/db"],
    }
    result = check("ServiceEntry", spec)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    assert result.resource is not None
    assert result.resource.spec.dump() == spec


def test_unquoted_ipv6_address_in_a_flow_list_is_read_back() -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: v6}\n"
        "spec:\n  hosts: [example.com]\n  addresses: [1.2.3.4, 2001:db8::]\n"
    )
    [result] = check_text(text, "v6.yaml")
    assert result.ok, errors(result)
    assert result.resource is not None
    assert result.resource.spec.dump()["addresses"] == ["1.2.3.4", "2001:db8::"]


def test_dynamic_dns_and_unix_endpoint_are_accepted() -> None:
    dynamic = check(
        "ServiceEntry",
        {"hosts": ["*.example.com"], "resolution": "DYNAMIC_DNS", "ports": [HTTP]},
    )
    assert dynamic.ok, errors(dynamic)
    unix = check("ServiceEntry", static({"address": "unix:///var/run/app.sock"}))
    assert unix.ok, errors(unix)


def test_waypoint_dynamic_dns_cannot_be_mesh_internal() -> None:
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "x", "labels": {"istio.io/use-waypoint": "waypoint"}},
        "spec": {
            "hosts": ["*.example.com"],
            "resolution": "DYNAMIC_DNS",
            "location": "MESH_INTERNAL",
            "ports": [HTTP],
        },
    }
    result = check_document(doc, "t.yaml:0")
    assert "spec.location: DYNAMIC_DNS with a waypoint cannot be MESH_INTERNAL" in errors(result)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, "spec: required field is missing"),
        ({}, "spec.hosts: required field is missing"),
        ({"hosts": []}, "spec.hosts: at least one host is required"),
        ({"hosts": ["*"]}, "spec.hosts[0]: hostname cannot be wildcard"),
        ({"hosts": ["-a.com"]}, "spec.hosts[0]: '-a.com'"),
        (
            se(workloadSelector={"labels": {"app": "a"}}, endpoints=[{"address": "1.2.3.4"}]),
            "spec.workloadSelector: only one of workloadSelector or endpoints",
        ),
        (
            se(workloadSelector={"labels": {"app": "*"}}),
            "spec.workloadSelector.labels: wildcard is not supported",
        ),
        (se(addresses=["1.2.3.4/99"]), "spec.addresses[0]: '1.2.3.4/99' is not an IP"),
        (
            se(addresses=["1.2.3.0/24"], resolution="DNS", ports=[HTTP]),
            "spec.addresses: CIDR addresses are allowed only",
        ),
        (
            se(ports=[HTTP, {**HTTP, "number": 81}]),
            "spec.ports[1].name: port name 'http' is already defined",
        ),
        (
            se(ports=[HTTP, {**HTTP, "name": "http2"}]),
            "spec.ports[1].number: port number 80 is already defined",
        ),
        (
            se(ports=[{**HTTP, "number": 0}]),
            "spec.ports[0].number: port number 0 must be in the range",
        ),
        (se(ports=[{**HTTP, "targetPort": 99999}]), "spec.ports[0].targetPort: port number 99999"),
        (se(ports=[{**HTTP, "name": "Http_1"}]), "spec.ports[0].name: invalid port name"),
        (se(ports=[{"number": 80, "protocol": "HTTP"}]), "spec.ports[0].name: invalid port name"),
        (
            se(ports=[{**HTTP, "protocol": "FTP"}]),
            "spec.ports[0].protocol: unsupported protocol 'FTP'",
        ),
        (
            se(resolution="NONE", endpoints=[{"address": "1.2.3.4"}]),
            "spec.endpoints: NONE mode cannot set endpoints",
        ),
        (static(None), "spec.endpoints[0]: must be a mapping"),
        (
            static({"address": "db.example.com"}),
            "spec.endpoints[0].address: endpoint address 'db.example.com' is not an IP",
        ),
        (
            static({"address": "unix:///a.sock", "ports": {"http": 80}}),
            "spec.endpoints[0].ports: a unix socket endpoint must not list ports",
        ),
        (
            static({"address": "unix://a.sock"}),
            "spec.endpoints[0].address: 'a.sock' is not an absolute path",
        ),
        (
            static({"address": "unix:///a.sock"}, ports=[HTTP, TCP]),
            "spec.endpoints[0].address: a unix socket endpoint needs exactly one service port",
        ),
        (
            static({"address": "1.2.3.4", "ports": {"grpc": 9090}}),
            "spec.endpoints[0].ports.grpc: endpoint port 'grpc' is not defined",
        ),
        (
            static({"address": "1.2.3.4", "ports": {"http": 0}}),
            "spec.endpoints[0].ports.http: port number 0",
        ),
        (
            static({"address": "1.2.3.4", "labels": {"a": "b c"}}),
            "spec.endpoints[0].labels: label value",
        ),
        (static({"labels": {"a": "b"}}), "spec.endpoints[0].address: required field is missing"),
        (
            {"hosts": ["*.example.com"], "resolution": "DNS", "ports": [HTTP]},
            "spec.hosts[0]: hosts must be fully qualified names when DNS",
        ),
        (
            se(
                resolution="DNS_ROUND_ROBIN",
                ports=[HTTP],
                endpoints=[{"address": "a.com"}, {"address": "b.com"}],
            ),
            "spec.endpoints: DNS_ROUND_ROBIN mode cannot have multiple endpoints",
        ),
        (
            se(resolution="DNS", ports=[HTTP], endpoints=[{"address": "a_b"}]),
            "spec.endpoints[0].address: endpoint address 'a_b' is not an FQDN",
        ),
        (
            se(
                resolution="DNS",
                ports=[HTTP],
                endpoints=[{"address": "a.com", "ports": {"web": 8080}}],
            ),
            "spec.endpoints[0].ports.web: endpoint port 'web' is not defined",
        ),
        (
            {"hosts": ["api.example.com"], "resolution": "DYNAMIC_DNS", "ports": [HTTP]},
            "spec.hosts[0]: DYNAMIC_DNS needs wildcard hosts",
        ),
        (
            {
                "hosts": ["*.example.com"],
                "resolution": "DYNAMIC_DNS",
                "ports": [HTTP],
                "addresses": ["1.2.3.4"],
            },
            "spec.addresses: DYNAMIC_DNS mode cannot set addresses",
        ),
        (
            {
                "hosts": ["*.example.com"],
                "resolution": "DYNAMIC_DNS",
                "ports": [HTTP],
                "endpoints": [{"address": "1.2.3.4"}],
            },
            "spec.endpoints: DYNAMIC_DNS mode cannot set endpoints",
        ),
        (
            {"hosts": ["*.example.com"], "resolution": "DYNAMIC_DNS", "ports": [TCP]},
            "spec.ports[0].protocol: DYNAMIC_DNS supports only",
        ),
        (
            {"hosts": ["a.example.com", "b.example.com"], "resolution": "DNS", "ports": [TCP]},
            "spec.ports[0].protocol: multiple hosts with resolution DNS need HTTP or TLS ports",
        ),
        (se(exportTo=["~", "foo"]), "spec.exportTo: '~' (not exported) cannot be combined"),
        (se(exportTo=["foo", "foo"]), "spec.exportTo[1]: duplicate entries in exportTo"),
        (se(resolution="DNS_ANY"), "spec.resolution: must be one of"),
        (se(location="MESH_LOCAL"), "spec.location: must be one of"),
        (se(ports=[{**HTTP, "number": "80"}]), "spec.ports[0].number: must be an integer"),
    ],
)
def test_invalid_entries_name_the_field(spec: dict[str, Any] | None, expected: str) -> None:
    result = check("ServiceEntry", spec)
    assert not result.ok
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"hosts": ["*x"]}, "spec.hosts[0]: '*x': a wildcard must be the whole host"),
        (se(ports=[TCP]), "spec.ports[0].protocol: addresses are required for ports serving TCP"),
        (
            se(workloadSelector={"labels": {"app": "a"}}),
            "spec.workloadSelector: workloadSelector has no effect",
        ),
        (
            se(resolution="STATIC", workloadSelector={}),
            "spec.workloadSelector: selector has no labels",
        ),
        (
            static({"network": "remote"}),
            "spec.endpoints[0].address: address is unset with network 'remote'",
        ),
        (
            {
                "hosts": ["a.example.com", "b.example.com"],
                "addresses": ["1.2.3.4"],
                "resolution": "DNS",
                "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
            },
            "spec.hosts: a service entry with addresses and a TCP port should have only one host",
        ),
    ],
)
def test_warnings_are_accepted(spec: dict[str, Any], expected: str) -> None:
    result = check("ServiceEntry", spec)
    assert result.ok, errors(result)
    assert any(w.startswith(expected) for w in warnings(result)), warnings(result)
