"""Sidecar: schema and semantic rules, each error at its field path."""

from __future__ import annotations

from typing import Any

import pytest

from api.resources import check_document
from tests.api.helpers import CORPUS, check, corpus_documents, errors, other_warnings, warnings

HTTP_PORT = {"number": 9080, "name": "http", "protocol": "HTTP"}
HTTPS_PORT = {"number": 9443, "name": "https", "protocol": "HTTPS"}
CERTS = {"serverCertificate": "/etc/certs/cert.pem", "privateKey": "/etc/certs/key.pem"}


def ingress(**listener: Any) -> dict[str, Any]:
    return {"ingress": [{"port": HTTP_PORT, **listener}]}


def ingress_tls(**tls: Any) -> dict[str, Any]:
    return {"ingress": [{"port": HTTPS_PORT, "tls": {"mode": "SIMPLE", **CERTS, **tls}}]}


def egress(*listeners: Any) -> dict[str, Any]:
    return {"egress": list(listeners)}


def hosts(*values: str) -> dict[str, Any]:
    return egress({"hosts": list(values)})


def outbound(**policy: Any) -> dict[str, Any]:
    return {"outboundTrafficPolicy": policy}


@pytest.mark.skipif(not CORPUS.exists(), reason="shared/corpus is not beside the repo")
def test_corpus_examples_are_accepted() -> None:
    documents = corpus_documents("Sidecar")
    assert len(documents) >= 3
    for where, doc in documents:
        result = check_document(doc, where)
        assert result.ok, f"{where}: {errors(result)}"


def test_full_spec_is_accepted() -> None:
    spec = {
        "workloadSelector": {"labels": {"app": "ratings"}},
        "ingress": [
            {
                "port": HTTP_PORT,
                "bind": "0.0.0.0",
                "captureMode": "IPTABLES",
                "defaultEndpoint": "127.0.0.1:8080",
                "connectionPool": {"http": {"http2MaxRequests": 100}},
            },
            {
                "port": HTTPS_PORT,
                "defaultEndpoint": "unix:///var/run/app.sock",
                "tls": {"mode": "MUTUAL", "caCertificates": "/etc/ca.pem", **CERTS},
            },
            {"port": {"number": 9000, "protocol": "TCP"}, "defaultEndpoint": "[::1]:9000"},
        ],
        "egress": [
            {
                "port": {"number": 0, "name": "uds"},
                "bind": "unix:///var/run/egress.sock",
                "captureMode": "NONE",
                "hosts": ["./*"],
            },
            {
                "port": {"number": 3306, "protocol": "MYSQL", "name": "mysql"},
                "bind": "127.0.0.1",
                "hosts": ["*/mysql.foo.com"],
            },
            {"hosts": ["istio-system/*", "~/*.example.com"]},
        ],
        "inboundConnectionPool": {"tcp": {"maxConnections": 10}},
        "outboundTrafficPolicy": {
            "mode": "ALLOW_ANY",
            "egressProxy": {
                "host": "egress.istio-system.svc.cluster.local",
                "subset": "v1",
                "port": {"number": 80},
            },
        },
    }
    result = check("Sidecar", spec)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    assert result.resource is not None
    assert result.resource.spec.dump() == spec


def test_selector_errors_stop_validation() -> None:
    result = check("Sidecar", {"workloadSelector": {"labels": {"app": "*"}}})
    assert errors(result) == [
        "spec.workloadSelector.labels: wildcard is not supported in selector label app=*"
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, "spec: a sidecar needs at least one of ingress, egress"),
        (
            {"workloadSelector": {"labels": {"": "a"}}, **hosts("./*")},
            "spec.workloadSelector.labels: selector has an empty label key",
        ),
        ({"ingress": [None]}, "spec.ingress[0]: must be a mapping"),
        (
            {"ingress": [{"defaultEndpoint": "127.0.0.1:80"}]},
            "spec.ingress[0].port: required field is missing",
        ),
        (
            {"ingress": [{"port": {**HTTP_PORT, "number": 0}}]},
            "spec.ingress[0].port.number: port number 0",
        ),
        (
            {"ingress": [{"port": {**HTTP_PORT, "protocol": "FTP"}}]},
            "spec.ingress[0].port.protocol: unsupported protocol",
        ),
        (
            {"ingress": [{"port": {**HTTP_PORT, "name": "Http_1"}}]},
            "spec.ingress[0].port.name: invalid port name",
        ),
        (ingress(bind="localhost"), "spec.ingress[0].bind: bind 'localhost' must be an IP"),
        (
            {"ingress": [{"port": {**HTTP_PORT, "targetPort": 80}}]},
            "spec.ingress[0].port.targetPort: targetPort is not supported",
        ),
        (
            {"ingress": [{"port": HTTP_PORT}, {"port": HTTP_PORT}]},
            "spec.ingress[1].port.number: port 9080 is already used",
        ),
        (
            ingress(defaultEndpoint="10.0.0.1:8080"),
            "spec.ingress[0].defaultEndpoint: defaultEndpoint '10.0.0.1:8080' must be",
        ),
        (
            ingress(defaultEndpoint="127.0.0.1:0"),
            "spec.ingress[0].defaultEndpoint: defaultEndpoint port '0'",
        ),
        (
            ingress(defaultEndpoint="127.0.0.1"),
            "spec.ingress[0].defaultEndpoint: defaultEndpoint '127.0.0.1' must be",
        ),
        (
            ingress(defaultEndpoint="unix://app.sock"),
            "spec.ingress[0].defaultEndpoint: 'app.sock' is not an absolute path",
        ),
        (
            ingress_tls(subjectAltNames=["a"]),
            "spec.ingress[0].tls.subjectAltNames: not supported in Sidecar ingress TLS",
        ),
        (ingress_tls(httpsRedirect=True), "spec.ingress[0].tls.httpsRedirect: not supported"),
        (ingress_tls(credentialName="cert"), "spec.ingress[0].tls.credentialName: not supported"),
        (
            ingress_tls(credentialNames=["cert"]),
            "spec.ingress[0].tls.credentialNames: not supported",
        ),
        (
            ingress_tls(tlsCertificates=[CERTS]),
            "spec.ingress[0].tls.tlsCertificates: not supported",
        ),
        (
            ingress_tls(mode="ISTIO_MUTUAL"),
            "spec.ingress[0].tls.mode: mode ISTIO_MUTUAL is not supported",
        ),
        (
            ingress_tls(mode="AUTO_PASSTHROUGH"),
            "spec.ingress[0].tls.mode: mode AUTO_PASSTHROUGH is not supported",
        ),
        (
            ingress(tls={"mode": "SIMPLE", **CERTS}),
            "spec.ingress[0].tls: TLS settings need an HTTPS or TLS port",
        ),
        (ingress_tls(privateKey=None), "spec.ingress[0].tls.privateKey: required in SIMPLE mode"),
        (ingress_tls(mode="MUTUAL"), "spec.ingress[0].tls.caCertificates: required in MUTUAL mode"),
        (
            ingress(connectionPool={"tcp": {"maxConnections": -1}}),
            "spec.ingress[0].connectionPool.tcp.maxConnections: must not be negative",
        ),
        (
            ingress(connectionPool={"tcp": {"connectTimeout": "0s"}}),
            "spec.ingress[0].connectionPool.tcp.connectTimeout: duration '0s'",
        ),
        ({"egress": [None]}, "spec.egress[0]: must be a mapping"),
        (
            egress({"hosts": ["./*"]}, {"port": HTTP_PORT, "hosts": ["./*"]}),
            "spec.egress[0].port: the egress listener without a port must be the last",
        ),
        (
            egress({"hosts": ["./*"]}, {"hosts": ["./*"]}),
            "spec.egress[1].port: only one egress listener may omit its port",
        ),
        (
            egress({"port": {"number": 0, "name": "uds"}, "hosts": ["./*"]}),
            "spec.egress[0].bind: port 0 needs a unix:// bind address",
        ),
        (
            egress(
                {
                    "port": {"number": 0},
                    "bind": "unix:///a.sock",
                    "captureMode": "IPTABLES",
                    "hosts": ["./*"],
                }
            ),
            "spec.egress[0].captureMode: unix socket listeners need captureMode DEFAULT or NONE",
        ),
        (
            egress({"port": {"number": 0}, "bind": "unix://a.sock", "hosts": ["./*"]}),
            "spec.egress[0].bind: 'a.sock' is not an absolute path",
        ),
        (
            egress({"port": {"number": 70000}, "hosts": ["./*"]}),
            "spec.egress[0].port.number: port number 70000",
        ),
        (
            egress({"port": HTTP_PORT, "bind": "localhost", "hosts": ["./*"]}),
            "spec.egress[0].bind: bind 'localhost' must be an IP",
        ),
        (
            egress({"port": HTTP_PORT, "hosts": ["./*"]}, {"port": HTTP_PORT, "hosts": ["./*"]}),
            "spec.egress[1].port.number: port 9080 is already used",
        ),
        (
            egress(
                {"port": {"number": 0}, "bind": "unix:///a.sock", "hosts": ["./*"]},
                {"port": {"number": 0}, "bind": "unix:///a.sock", "hosts": ["./*"]},
            ),
            "spec.egress[1].bind: unix socket 'unix:///a.sock' is already used",
        ),
        (
            egress({"port": {**HTTP_PORT, "targetPort": 80}, "hosts": ["./*"]}),
            "spec.egress[0].port.targetPort: targetPort is not supported",
        ),
        (
            egress({"port": HTTP_PORT}),
            "spec.egress[0].hosts: an egress listener needs at least one host",
        ),
        (
            hosts("foo.example.com"),
            "spec.egress[0].hosts[0]: 'foo.example.com': must be namespace/host",
        ),
        (hosts("ns/reviews"), "spec.egress[0].hosts[0]: 'ns/reviews': short names are not allowed"),
        (hosts("ns/foo.*.com"), "spec.egress[0].hosts[0]: 'foo.*.com': a wildcard must be"),
        (hosts("Bad_NS/*"), "spec.egress[0].hosts[0]: 'Bad_NS/*': invalid namespace"),
        (
            outbound(mode="ALLOW_ANY_DYNAMIC_DNS"),
            "spec.outboundTrafficPolicy.mode: ALLOW_ANY_DYNAMIC_DNS can only be set in mesh config",
        ),
        (
            outbound(
                mode="REGISTRY_ONLY",
                egressProxy={"host": "egress.example.com", "port": {"number": 80}},
            ),
            "spec.outboundTrafficPolicy.mode: egressProxy needs mode ALLOW_ANY",
        ),
        (
            outbound(
                mode="ALLOW_ANY", egressProxy={"host": "*.example.com", "port": {"number": 80}}
            ),
            "spec.outboundTrafficPolicy.egressProxy.host: '*.example.com' must be a fully",
        ),
        (
            outbound(mode="ALLOW_ANY", egressProxy={"host": "egress.example.com"}),
            "spec.outboundTrafficPolicy.egressProxy.port: required field is missing",
        ),
        (
            outbound(
                mode="ALLOW_ANY",
                egressProxy={
                    "host": "egress.example.com",
                    "subset": "v1.0",
                    "port": {"number": 80},
                },
            ),
            "spec.outboundTrafficPolicy.egressProxy.subset: 'v1.0' is not a DNS-1123 label",
        ),
        (
            {"inboundConnectionPool": {}},
            "spec.inboundConnectionPool: connection pool must set http and/or tcp",
        ),
        (
            egress({"captureMode": "TPROXY", "hosts": ["./*"]}),
            "spec.egress[0].captureMode: must be one of",
        ),
    ],
)
def test_invalid_sidecars_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check("Sidecar", spec)
    assert not result.ok
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"workloadSelector": {}, **hosts("./*")}, "spec.workloadSelector: selector has no labels"),
        (
            hosts("ns/a.example.com", "ns/a.example.com"),
            "spec.egress[0].hosts[1]: duplicate egress host 'ns/a.example.com'",
        ),
        (hosts("ns/*", "ns/a.example.com"), "spec.egress[0].hosts[1]: duplicate egress host"),
        (
            hosts("ns/a.example.com", "ns/*"),
            "spec.egress[0].hosts[1]: 'ns/*' already covers the earlier hosts",
        ),
        (hosts("*/*", "ns/a.example.com"), "spec.egress[0].hosts: '*/*' selects every host"),
        (
            {
                "ingress": [
                    {
                        "port": {"number": 3306, "protocol": "TCP"},
                        "connectionPool": {"http": {"maxRetries": 1}},
                    }
                ]
            },
            "spec.ingress[0].connectionPool.http: HTTP connection pool settings on port 3306",
        ),
    ],
)
def test_warnings_are_accepted(spec: dict[str, Any], expected: str) -> None:
    result = check("Sidecar", spec)
    assert result.ok, errors(result)
    assert any(w.startswith(expected) for w in warnings(result)), warnings(result)
