"""Gateway: schema and semantic rules, each error at its field path."""

from __future__ import annotations

from typing import Any

import pytest

from api.resources import check_document
from tests.api.helpers import CORPUS, check, corpus_documents, errors, other_warnings, warnings

HTTP_PORT = {"number": 80, "name": "http", "protocol": "HTTP"}
HTTPS_PORT = {"number": 443, "name": "https", "protocol": "HTTPS"}
CERTS = {"serverCertificate": "/etc/certs/cert.pem", "privateKey": "/etc/certs/key.pem"}


def server(port: Any = None, hosts: Any = None, **extra: Any) -> dict[str, Any]:
    out = {"port": HTTP_PORT if port is None else port, "hosts": hosts or ["*.example.com"]}
    return {**out, **extra}


def gw(*servers: Any, **spec: Any) -> dict[str, Any]:
    return {"selector": {"istio": "ingressgateway"}, "servers": list(servers), **spec}


def https(tls: Any) -> dict[str, Any]:
    return gw(server(HTTPS_PORT, tls=tls))


@pytest.mark.skipif(not CORPUS.exists(), reason="shared/corpus is not beside the repo")
def test_corpus_examples_are_accepted() -> None:
    documents = corpus_documents("Gateway")
    assert len(documents) >= 8
    for where, doc in documents:
        result = check_document(doc, where)
        assert result.ok, f"{where}: {errors(result)}"


def test_full_spec_is_accepted() -> None:
    spec = gw(
        server(HTTP_PORT, ["./*.example.com"], tls={"httpsRedirect": True}, name="plain"),
        server(
            HTTPS_PORT,
            ["prod/api.example.com", "10.0.0.1"],
            bind="0.0.0.0",
            defaultEndpoint="127.0.0.1:8080",
            tls={
                "mode": "MUTUAL",
                "credentialName": "api-cert",
                "subjectAltNames": ["client"],
                "verifyCertificateSpki": ["abc"],
                "verifyCertificateHash": ["def"],
                "minProtocolVersion": "TLSV1_2",
                "maxProtocolVersion": "TLSV1_3",
                "cipherSuites": ["ECDHE-RSA-AES256-GCM-SHA384"],
            },
        ),
        server({"number": 0, "name": "uds", "protocol": "HTTP"}, bind="unix:///var/run/gw.sock"),
        server(
            {"number": 8443, "name": "multi", "protocol": "HTTPS"},
            tls={"mode": "SIMPLE", "tlsCertificates": [CERTS, CERTS]},
        ),
    )
    result = check("Gateway", spec)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    assert result.resource is not None
    assert result.resource.spec.dump() == spec


def test_converted_gateway_may_use_dots_and_tilde() -> None:
    result = check(
        "Gateway",
        gw(server(hosts=["~/a.example.com"])),
        name="gw.converted",
    )
    assert "metadata.name: gateway name 'gw.converted' must be a DNS label (no dots)" in errors(
        result
    )
    assert any(e.startswith("spec.servers[0].hosts[0]: '~/a.example.com'") for e in errors(result))
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": "gw.converted",
            "annotations": {"internal.istio.io/gateway-semantics": "gateway"},
        },
        "spec": gw(server(hosts=["~/a.example.com"])),
    }
    converted = check_document(doc, "t.yaml:0")
    assert converted.ok, errors(converted)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"selector": {"istio": "ingressgateway"}},
            "spec.servers: a gateway needs at least one server",
        ),
        (gw(None), "spec.servers[0]: must be a mapping"),
        (
            gw(server(), server(hosts=["b.example.com"])),
            "spec.servers[1].port.name: port names must be unique",
        ),
        (gw({"port": HTTP_PORT}), "spec.servers[0].hosts: a server needs at least one host"),
        (
            gw(server(hosts=["reviews"])),
            "spec.servers[0].hosts[0]: 'reviews': short names are not allowed",
        ),
        (
            gw(server(hosts=["ns/foo.*.com"])),
            "spec.servers[0].hosts[0]: 'foo.*.com': a wildcard must be",
        ),
        (
            gw(server(hosts=["Bad_NS/a.example.com"])),
            "spec.servers[0].hosts[0]: 'Bad_NS/a.example.com': invalid namespace",
        ),
        (gw({"hosts": ["a.example.com"]}), "spec.servers[0].port: required field is missing"),
        (
            gw(server({"number": 80, "protocol": "HTTP"})),
            "spec.servers[0].port.name: required field is missing",
        ),
        (
            gw(server({"number": 80, "name": "x", "protocol": "FTP"})),
            "spec.servers[0].port.protocol: unsupported protocol 'FTP'",
        ),
        (
            gw(server({"number": 80, "name": "x"})),
            "spec.servers[0].port.protocol: required field is missing",
        ),
        (gw(server({**HTTP_PORT, "number": 0})), "spec.servers[0].port.number: port number 0"),
        (
            gw(server(HTTP_PORT, bind="unix:///gw.sock")),
            "spec.servers[0].port.number: port number must be 0 with a unix socket",
        ),
        (
            gw(server({**HTTP_PORT, "number": 0}, bind="unix://gw.sock")),
            "spec.servers[0].bind: 'gw.sock' is not an absolute path",
        ),
        (
            gw(server(HTTP_PORT, bind="localhost")),
            "spec.servers[0].bind: bind 'localhost' must be an IP",
        ),
        (
            gw(server({**HTTP_PORT, "targetPort": 8080})),
            "spec.servers[0].port.targetPort: targetPort is not supported",
        ),
        (gw(server(HTTPS_PORT)), "spec.servers[0].tls: HTTPS servers need TLS settings"),
        (
            gw(server(HTTP_PORT, tls={"mode": "SIMPLE", "credentialName": "c"})),
            "spec.servers[0].tls: plain-text HTTP servers cannot have TLS",
        ),
        (
            gw(server(HTTP_PORT, tls={"httpsRedirect": True, **CERTS})),
            "spec.servers[0].tls: plain-text HTTP servers cannot have TLS",
        ),
        (
            gw(
                server(
                    {"number": 31400, "name": "tcp", "protocol": "TCP"}, tls={"mode": "PASSTHROUGH"}
                )
            ),
            "spec.servers[0].tls: TCP servers cannot have TLS",
        ),
        (
            https({"mode": "ISTIO_MUTUAL", "serverCertificate": "/c.pem"}),
            "spec.servers[0].tls.serverCertificate: must not be set in ISTIO_MUTUAL",
        ),
        (
            https({"mode": "ISTIO_MUTUAL", "credentialNames": ["a"]}),
            "spec.servers[0].tls.credentialNames: must not be set in ISTIO_MUTUAL",
        ),
        (
            https({"mode": "SIMPLE", "credentialName": "c", **CERTS}),
            "spec.servers[0].tls: only one certificate source may be set",
        ),
        (
            https({"mode": "SIMPLE", "privateKey": "/k.pem"}),
            "spec.servers[0].tls.serverCertificate: required in SIMPLE mode",
        ),
        (
            https({"mode": "SIMPLE", "serverCertificate": "/c.pem"}),
            "spec.servers[0].tls.privateKey: required in SIMPLE mode",
        ),
        (
            https({"mode": "MUTUAL", **CERTS}),
            "spec.servers[0].tls.caCertificates: required in MUTUAL mode",
        ),
        (
            https({"mode": "OPTIONAL_MUTUAL", **CERTS}),
            "spec.servers[0].tls.caCertificates: required in OPTIONAL_MUTUAL mode",
        ),
        (
            https({"mode": "SIMPLE", "tlsCertificates": [{"serverCertificate": "/c.pem"}]}),
            "spec.servers[0].tls.tlsCertificates[0].privateKey: required in SIMPLE mode",
        ),
        (
            https({"mode": "MUTUAL", "credentialName": "c", "caCrl": "/crl.pem"}),
            "spec.servers[0].tls.caCrl: caCrl cannot be combined with credentialName",
        ),
        (
            https({"mode": "SIMPLE", "caCrl": "/crl.pem", **CERTS}),
            "spec.servers[0].tls.caCrl: caCrl is not supported in SIMPLE mode",
        ),
        (https({"mode": "STRICT"}), "spec.servers[0].tls.mode: must be one of"),
        (
            https({"mode": "SIMPLE", "credentialName": "c", "minProtocolVersion": "TLSV1_4"}),
            "spec.servers[0].tls.minProtocolVersion: must be one of",
        ),
        (gw(server(hosts="a.example.com")), "spec.servers[0].hosts: must be a list"),
    ],
)
def test_invalid_gateways_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check("Gateway", spec)
    assert not result.ok
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


def test_name_must_be_a_dns_label() -> None:
    result = check("Gateway", gw(server()), name="my.gateway")
    assert errors(result) == [
        "metadata.name: gateway name 'my.gateway' must be a DNS label (no dots)"
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            https({"mode": "SIMPLE", "credentialName": "c", "httpsRedirect": True}),
            "spec.servers[0].tls.httpsRedirect: httpsRedirect only applies to HTTP servers",
        ),
        (
            https({"mode": "PASSTHROUGH", **CERTS}),
            "spec.servers[0].tls: PASSTHROUGH mode does not use certificates",
        ),
        (
            https({"mode": "SIMPLE", "credentialName": "c", "cipherSuites": ["NOT-A-CIPHER"]}),
            "spec.servers[0].tls.cipherSuites[0]: unknown cipher suite 'NOT-A-CIPHER'",
        ),
        (
            https(
                {
                    "mode": "SIMPLE",
                    "credentialName": "c",
                    "cipherSuites": ["AES128-SHA", "AES128-SHA"],
                }
            ),
            "spec.servers[0].tls.cipherSuites[1]: duplicate cipher suite",
        ),
        (
            https({"mode": "SIMPLE", "credentialName": "c", "minProtocolVersion": "TLSV1_1"}),
            "spec.servers[0].tls.minProtocolVersion: minProtocolVersion TLSV1_1 without",
        ),
    ],
)
def test_warnings_are_accepted(spec: dict[str, Any], expected: str) -> None:
    result = check("Gateway", spec)
    assert result.ok, errors(result)
    assert any(w.startswith(expected) for w in warnings(result)), warnings(result)
