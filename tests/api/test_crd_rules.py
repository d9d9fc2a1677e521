"""Rules of Istio's CRD schemas (istio/istio release-1.31, crd-all.gen.yaml) that a cluster
enforces: maxItems, minItems, maxLength, maxProperties, required, patterns and the
x-kubernetes-validations. One refused document per rule, and the limits themselves accepted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import check, errors

SE: dict[str, Any] = {
    "hosts": ["api.example.com"],
    "addresses": ["10.0.0.1"],
    "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
    "resolution": "STATIC",
    "endpoints": [{"address": "10.1.0.1"}],
}
SE_SELECTOR: dict[str, Any] = {**SE, "endpoints": None}
CERT = {"serverCertificate": "/etc/certs/cert.pem", "privateKey": "/etc/certs/key.pem"}
REF = {"kind": "Service", "name": "svc"}
JWT = {"issuer": "https://issuer.example.com", "jwksUri": "https://issuer.example.com/jwks"}
TRACING: dict[str, Any] = {"providers": [{"name": "zipkin"}]}


def _se(**changes: Any) -> dict[str, Any]:
    return {key: value for key, value in {**SE, **changes}.items() if value is not None}


def _endpoint(**fields: Any) -> dict[str, Any]:
    return _se(endpoints=[{"address": "10.1.0.1", **fields}])


def _many(count: int, value: Any = "v") -> dict[str, Any]:
    return {f"k{i}": value for i in range(count)}


def _gateway_tls(**tls: Any) -> dict[str, Any]:
    port = {"number": 443, "name": "https", "protocol": "HTTPS"}
    return {
        "servers": [{"port": port, "hosts": ["*.example.com"], "tls": {"mode": "SIMPLE", **tls}}]
    }


def _dr_lb(lb: dict[str, Any]) -> dict[str, Any]:
    return {"host": "api.example.com", "trafficPolicy": {"loadBalancer": lb}}


def _probe(probe: dict[str, Any]) -> dict[str, Any]:
    return {"template": {}, "probe": probe}


def _tag(tag: dict[str, Any]) -> dict[str, Any]:
    return {"tracing": [{**TRACING, "customTags": {"t": tag}}]}


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # --- ServiceEntry
    (
        "ServiceEntry",
        _se(hosts=[f"h{i}.example.com" for i in range(257)]),
        "spec.hosts: must have at most 256 items, not 257",
    ),
    (
        "ServiceEntry",
        _se(addresses=[f"10.0.{i // 200}.{i % 200}" for i in range(257)]),
        "spec.addresses: must have at most 256 items, not 257",
    ),
    (
        "ServiceEntry",
        _se(addresses=["fe80::1%" + "e" * 60]),
        "spec.addresses[0]: must be at most 64 characters long, not 68",
    ),
    (
        "ServiceEntry",
        _se(ports=[{"number": i + 1, "name": f"p{i}", "protocol": "HTTP"} for i in range(257)]),
        "spec.ports: must have at most 256 items, not 257",
    ),
    (
        "ServiceEntry",
        _se(endpoints=[{"address": f"10.1.{i // 200}.{i % 200}"} for i in range(4097)]),
        "spec.endpoints: must have at most 4096 items, not 4097",
    ),
    (
        "ServiceEntry",
        _se(ports=[{"number": 80, "name": "http", "protocol": "HTTP"}], endpoints=None)
        | {"endpoints": [{"address": "unix:///" + "s" * 250}]},
        "spec.endpoints[0].address: must be at most 256 characters long, not 258",
    ),
    (
        "ServiceEntry",
        _endpoint(network="n" * 2049),
        "spec.endpoints[0].network: must be at most 2048 characters long",
    ),
    (
        "ServiceEntry",
        _endpoint(locality="r" * 2049),
        "spec.endpoints[0].locality: must be at most 2048 characters long",
    ),
    (
        "ServiceEntry",
        _endpoint(serviceAccount="s" * 254),
        "spec.endpoints[0].serviceAccount: must be at most 253 characters long",
    ),
    (
        "ServiceEntry",
        _endpoint(labels=_many(257)),
        "spec.endpoints[0].labels: must have at most 256 entries, not 257",
    ),
    (
        "ServiceEntry",
        _endpoint(ports=_many(129, 80)),
        "spec.endpoints[0].ports: must have at most 128 entries, not 129",
    ),
    (
        "ServiceEntry",
        _se(ports=[{"number": 80, "name": "p" * 63, "protocol": "HTTP"}])
        | {"endpoints": [{"address": "10.1.0.1", "ports": {"p" * 63: 8080}}]},
        f"spec.endpoints[0].ports.{'p' * 63}: port name",
    ),
    (
        "ServiceEntry",
        {**SE_SELECTOR, "endpoints": None, "workloadSelector": {"labels": _many(257)}},
        "spec.workloadSelector.labels: must have at most 256 entries, not 257",
    ),
    (
        "ServiceEntry",
        {**SE_SELECTOR, "endpoints": None, "workloadSelector": {"labels": {"app": "a" * 64}}},
        "spec.workloadSelector.labels.app: must be at most 63 characters long, not 64",
    ),
    # --- DestinationRule
    (
        "DestinationRule",
        {
            "host": "api.example.com",
            "trafficPolicy": {
                "portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}] * 4097
            },
        },
        "spec.trafficPolicy.portLevelSettings: must have at most 4096 items, not 4097",
    ),
    (
        "DestinationRule",
        _dr_lb({"zoneAwareLbSetting": {"minClusterSize": 2**32}}),
        "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.minClusterSize: must be <= 4294967295",
    ),
    (
        "DestinationRule",
        {"host": "api.example.com", "workloadSelector": {"matchLabels": _many(4097)}},
        "spec.workloadSelector.matchLabels: must have at most 4096 entries, not 4097",
    ),
    (
        "DestinationRule",
        {"host": "api.example.com", "workloadSelector": {"matchLabels": {"app": "a" * 64}}},
        "spec.workloadSelector.matchLabels.app: must be at most 63 characters long",
    ),
    # --- Gateway
    (
        "Gateway",
        _gateway_tls(credentialNames=[]),
        "spec.servers[0].tls.credentialNames: must have at least 1 item, not 0",
    ),
    (
        "Gateway",
        _gateway_tls(credentialNames=["a", "b", "c"]),
        "spec.servers[0].tls.credentialNames: must have at most 2 items, not 3",
    ),
    (
        "Gateway",
        _gateway_tls(mode="PASSTHROUGH", tlsCertificates=[]),
        "spec.servers[0].tls.tlsCertificates: must have at least 1 item, not 0",
    ),
    (
        "Gateway",
        _gateway_tls(tlsCertificates=[CERT, CERT, CERT]),
        "spec.servers[0].tls.tlsCertificates: must have at most 2 items, not 3",
    ),
    # --- Sidecar
    (
        "Sidecar",
        {"workloadSelector": {"labels": _many(257)}, "egress": [{"hosts": ["./*"]}]},
        "spec.workloadSelector.labels: must have at most 256 entries",
    ),
    (
        "Sidecar",
        {"workloadSelector": {"labels": {"app": "a" * 64}}, "egress": [{"hosts": ["./*"]}]},
        "spec.workloadSelector.labels.app: must be at most 63 characters long",
    ),
    # --- WorkloadEntry
    (
        "WorkloadEntry",
        {"address": "unix:///" + "s" * 250},
        "spec.address: must be at most 256 characters long, not 258",
    ),
    (
        "WorkloadEntry",
        {"address": "10.0.0.1", "network": "n" * 2049},
        "spec.network: must be at most 2048 characters long",
    ),
    (
        "WorkloadEntry",
        {"address": "10.0.0.1", "locality": "r" * 2049},
        "spec.locality: must be at most 2048 characters long",
    ),
    (
        "WorkloadEntry",
        {"address": "10.0.0.1", "labels": _many(257)},
        "spec.labels: must have at most 256 entries, not 257",
    ),
    (
        "WorkloadEntry",
        {"address": "10.0.0.1", "ports": _many(129, 80)},
        "spec.ports: must have at most 128 entries, not 129",
    ),
    (
        "WorkloadEntry",
        {"address": "10.0.0.1", "ports": {"-http": 80}},
        "spec.ports.-http: port name '-http' must be 1..62 letters, digits or '-'",
    ),
    # --- WorkloadGroup
    (
        "WorkloadGroup",
        {"template": {}, "metadata": {"labels": _many(257)}},
        "spec.metadata.labels: must have at most 256 entries, not 257",
    ),
    (
        "WorkloadGroup",
        {"template": {}, "metadata": {"annotations": _many(257)}},
        "spec.metadata.annotations: must have at most 256 entries, not 257",
    ),
    (
        "WorkloadGroup",
        {"template": {"ports": {"p" * 63: 80}}},
        f"spec.template.ports.{'p' * 63}: port name",
    ),
    (
        "WorkloadGroup",
        {"template": {"locality": "r" * 2049}},
        "spec.template.locality: must be at most 2048 characters long",
    ),
    (
        "WorkloadGroup",
        _probe({"httpGet": {"path": "/ready"}}),
        "spec.probe.httpGet.port: required field is missing",
    ),
    (
        "WorkloadGroup",
        _probe({"tcpSocket": {"host": "localhost"}}),
        "spec.probe.tcpSocket.port: required field is missing",
    ),
    (
        "WorkloadGroup",
        _probe({"exec": {"command": ["check", ""]}}),
        "spec.probe.exec.command[1]: must not be an empty string",
    ),
    (
        "WorkloadGroup",
        _probe({"httpGet": {"port": 80, "scheme": "FTP"}}),
        "spec.probe.httpGet.scheme: scheme must be HTTP or HTTPS, not 'FTP'",
    ),
    (
        "WorkloadGroup",
        _probe({"httpGet": {"port": 80, "httpHeaders": [{"name": "x header", "value": "v"}]}}),
        "spec.probe.httpGet.httpHeaders[0].name: header name 'x header' must match",
    ),
    # --- AuthorizationPolicy
    (
        "AuthorizationPolicy",
        {"rules": [{}] * 513},
        "spec.rules: must have at most 512 items, not 513",
    ),
    (
        "AuthorizationPolicy",
        {"rules": [{"from": [{"source": {"principals": ["a"]}}] * 513}]},
        "spec.rules[0].from: must have at most 512 items, not 513",
    ),
    (
        "AuthorizationPolicy",
        {"selector": {"matchLabels": _many(4097)}},
        "spec.selector.matchLabels: must have at most 4096 entries, not 4097",
    ),
    (
        "AuthorizationPolicy",
        {"selector": {"matchLabels": {"app": "a" * 64}}},
        "spec.selector.matchLabels.app: must be at most 63 characters long, not 64",
    ),
    (
        "AuthorizationPolicy",
        {"targetRef": {**REF, "name": "n" * 254}},
        "spec.targetRef.name: must be at most 253 characters long, not 254",
    ),
    (
        "AuthorizationPolicy",
        {"targetRefs": [{**REF, "name": f"svc{i}"} for i in range(17)]},
        "spec.targetRefs: must have at most 16 items, not 17",
    ),
    # --- RequestAuthentication
    (
        "RequestAuthentication",
        {"jwtRules": [{"issuer": f"issuer-{i}"} for i in range(4097)]},
        "spec.jwtRules: must have at most 4096 items, not 4097",
    ),
    (
        "RequestAuthentication",
        {"jwtRules": [{**JWT, "jwksUri": ""}]},
        "spec.jwtRules[0].jwksUri: must not be empty",
    ),
    (
        "RequestAuthentication",
        {"jwtRules": [{**JWT, "jwksUri": "https://issuer.example.com/" + "k" * 2048}]},
        "spec.jwtRules[0].jwksUri: must be at most 2048 characters long, not 2075",
    ),
    (
        "RequestAuthentication",
        {"jwtRules": [{**JWT, "spaceDelimitedClaims": [f"c{i}" for i in range(65)]}]},
        "spec.jwtRules[0].spaceDelimitedClaims: must have at most 64 items, not 65",
    ),
    (
        "RequestAuthentication",
        {"targetRefs": [{**REF, "name": "n" * 254}]},
        "spec.targetRefs[0].name: must be at most 253 characters long",
    ),
    # --- PeerAuthentication
    (
        "PeerAuthentication",
        {"selector": {"matchLabels": {"app": "a" * 64}}},
        "spec.selector.matchLabels.app: must be at most 63 characters long",
    ),
    # --- Telemetry
    (
        "Telemetry",
        {
            "metrics": [
                {"overrides": [{"tagOverrides": {"t": {"operation": "UPSERT", "value": ""}}}]}
            ]
        },
        "spec.metrics[0].overrides[0].tagOverrides.t.value: value is required when operation is",
    ),
    (
        "Telemetry",
        _tag({"literal": {}}),
        "spec.tracing[0].customTags.t.literal.value: must not be empty",
    ),
    (
        "Telemetry",
        _tag({"environment": {"name": ""}}),
        "spec.tracing[0].customTags.t.environment.name: must not be empty",
    ),
    (
        "Telemetry",
        _tag({"header": {"defaultValue": "x"}}),
        "spec.tracing[0].customTags.t.header.name: must not be empty",
    ),
    (
        "Telemetry",
        {"selector": {"matchLabels": _many(4097)}, "tracing": [TRACING]},
        "spec.selector.matchLabels: must have at most 4096 entries",
    ),
]


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    REFUSED,
    ids=[f"{kind}:{expected.split(':')[0]}" for kind, _, expected in REFUSED],
)
def test_crd_rule_is_enforced_at_the_field(kind: str, spec: dict[str, Any], expected: str) -> None:
    result = check(kind, spec)
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    # Right at the CRD's limits: we must not be stricter than a cluster.
    ("ServiceEntry", _se(hosts=[f"h{i}.example.com" for i in range(256)])),
    ("ServiceEntry", _endpoint(serviceAccount="s" * 253, locality="r" * 2048)),
    (
        "ServiceEntry",
        _se(ports=[{"number": 80, "name": "p" * 62, "protocol": "HTTP"}])
        | {"endpoints": [{"address": "10.1.0.1", "ports": {"p" * 62: 8080}}]},
    ),
    ("DestinationRule", _dr_lb({"zoneAwareLbSetting": {"minClusterSize": 2**32 - 1}})),
    ("Gateway", _gateway_tls(credentialNames=["rsa", "ecdsa"])),
    ("Gateway", _gateway_tls(tlsCertificates=[CERT, CERT])),
    ("WorkloadEntry", {"network": "vm-net"}),  # Istio's own CRD test: no address, a network
    ("WorkloadGroup", _probe({"httpGet": {"port": 80, "scheme": "HTTPS"}})),
    ("WorkloadGroup", _probe({"httpGet": {"port": 80, "scheme": ""}})),
    ("AuthorizationPolicy", {"rules": [{}] * 512}),
    ("AuthorizationPolicy", {"targetRefs": [{**REF, "name": f"svc{i}"} for i in range(16)]}),
    (
        "RequestAuthentication",
        {"jwtRules": [{**JWT, "spaceDelimitedClaims": [f"c{i}" for i in range(64)]}]},
    ),
    ("Telemetry", _tag({"literal": {"value": "v"}})),
]


@pytest.mark.parametrize(("kind", "spec"), ACCEPTED)
def test_crd_limits_themselves_are_accepted(kind: str, spec: dict[str, Any]) -> None:
    result = check(kind, spec)
    assert result.ok, errors(result)
