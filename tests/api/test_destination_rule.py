"""DestinationRule: schema and semantic rules, each error at its field path."""

from __future__ import annotations

from typing import Any

import pytest

from api.resources import check_document
from tests.api.helpers import CORPUS, check, corpus_documents, errors, other_warnings, warnings

HOST = "ratings.prod.svc.cluster.local"


def tp(policy: Any) -> dict[str, Any]:
    return {"host": HOST, "trafficPolicy": policy}


def lb(settings: Any) -> dict[str, Any]:
    return tp({"loadBalancer": settings})


def locality(setting: Any, **policy: Any) -> dict[str, Any]:
    return tp({"loadBalancer": {"localityLbSetting": setting}, **policy})


def pool(settings: Any) -> dict[str, Any]:
    return tp({"connectionPool": settings})


def outlier(settings: Any) -> dict[str, Any]:
    return tp({"outlierDetection": settings})


def tls(settings: Any) -> dict[str, Any]:
    return tp({"tls": settings})


@pytest.mark.skipif(not CORPUS.exists(), reason="shared/corpus is not beside the repo")
def test_corpus_examples_are_judged_as_istio_does() -> None:
    documents = corpus_documents("DestinationRule")
    assert len(documents) >= 15
    for where, doc in documents:
        expected_error = doc.pop("_err", None)
        result = check_document(doc, where)
        if expected_error is None:
            assert result.ok, f"{where}: {errors(result)}"
        else:
            assert not result.ok, f"{where} should be refused ({expected_error})"


def test_full_spec_is_accepted_and_dumps_camel_case() -> None:
    policy = {
        "loadBalancer": {
            "consistentHash": {
                "httpCookie": {
                    "name": "user",
                    "path": "/",
                    "ttl": "0s",
                    "attributes": [{"name": "SameSite", "value": "Strict"}],
                },
                "ringHash": {"minimumRingSize": 1024},
            },
            "localityLbSetting": {
                "distribute": [
                    {
                        "from": "us-west/zone1/*",
                        "to": {"us-west/zone1/*": 80, "us-west/zone2/*": 20},
                    }
                ],
                "enabled": True,
            },
            "warmupDurationSecs": "30s",
        },
        "connectionPool": {
            "tcp": {
                "maxConnections": 100,
                "connectTimeout": "30ms",
                "tcpKeepalive": {"probes": 3, "time": "7200s", "interval": "75s"},
                "maxConnectionDuration": "1h",
                "idleTimeout": "0s",
            },
            "http": {
                "http1MaxPendingRequests": 10,
                "http2MaxRequests": 1000,
                "maxRequestsPerConnection": 10,
                "maxRetries": 3,
                "idleTimeout": "1h",
                "h2UpgradePolicy": "DO_NOT_UPGRADE",
                "useClientProtocol": True,
                "maxConcurrentStreams": 100,
            },
        },
        "outlierDetection": {
            "splitExternalLocalOriginErrors": True,
            "consecutiveLocalOriginFailures": 3,
            "consecutiveGatewayErrors": 5,
            "consecutive5xxErrors": 7,
            "interval": "5m",
            "baseEjectionTime": "15m",
            "maxEjectionPercent": 50,
            "minHealthPercent": 10,
        },
        "tls": {
            "mode": "SIMPLE",
            "credentialName": "client-credential",
            "subjectAltNames": ["ratings"],
            "sni": "ratings.example.com",
        },
        "portLevelSettings": [
            {"port": {"number": 9080}, "loadBalancer": {"simple": "LEAST_REQUEST"}},
            {"port": {"number": 9443}, "tls": {"mode": "ISTIO_MUTUAL"}},
        ],
        "tunnel": {"protocol": "POST", "targetHost": "10.0.0.1", "targetPort": 8443},
        "retryBudget": {"percent": 20.5, "minRetryConcurrency": 3},
    }
    spec = {
        "host": HOST,
        "trafficPolicy": policy,
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {
                "name": "v2",
                "labels": {"version": "v2"},
                "trafficPolicy": {"proxyProtocol": {"version": "V2"}},
            },
        ],
        "exportTo": ["."],
    }
    result = check("DestinationRule", spec)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    assert result.resource is not None
    assert result.resource.spec.dump() == spec


def test_a_workload_scoped_rule_is_accepted_only_without_tls() -> None:
    """Such a rule is not applied (warned): its TLS would be lost, so TLS is refused."""
    scoped = {"host": HOST, "workloadSelector": {"matchLabels": {"app": "ratings"}}}
    plain = check("DestinationRule", {**scoped, "trafficPolicy": {"tls": {"mode": "DISABLE"}}})
    assert plain.ok, errors(plain)
    for policy, path in (
        ({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}, "spec.trafficPolicy.tls"),
        (
            {
                "trafficPolicy": {
                    "portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "SIMPLE"}}]
                }
            },
            "spec.trafficPolicy.portLevelSettings[0].tls",
        ),
        (
            {
                "subsets": [
                    {
                        "name": "v1",
                        "labels": {"v": "1"},
                        "trafficPolicy": {"tls": {"mode": "SIMPLE"}},
                    }
                ]
            },
            "spec.subsets[0].trafficPolicy.tls",
        ),
    ):
        result = check("DestinationRule", {**scoped, **policy})
        assert [e.split(": ")[0] for e in errors(result)] == [path]


def test_maglev_and_warmup_are_accepted() -> None:
    result = check(
        "DestinationRule",
        lb(
            {
                "consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 65537}},
                "warmup": {"duration": "60s", "minimumPercent": 10, "aggression": 1.5},
            }
        ),
    )
    assert result.ok, errors(result)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # host
        ({}, "spec.host: required field is missing"),
        ({"host": "-foo.com"}, "spec.host: '-foo.com': '-foo' is not a valid domain label"),
        # subsets
        ({"host": HOST, "subsets": [None]}, "spec.subsets[0]: must be a mapping"),
        ({"host": HOST, "subsets": [{"labels": {"a": "b"}}]}, "spec.subsets[0].name: required"),
        (
            {"host": HOST, "subsets": [{"name": "v1"}, {"name": "v1"}]},
            "spec.subsets[1].name: duplicate",
        ),
        (
            {"host": HOST, "subsets": [{"name": "v1.0"}]},
            "spec.subsets[0].name: 'v1.0' is not a DNS-1123",
        ),
        (
            {"host": HOST, "subsets": [{"name": "v1", "labels": {"a": "b c"}}]},
            "spec.subsets[0].labels: label value",
        ),
        (
            {"host": HOST, "subsets": [{"name": "v1", "trafficPolicy": {}}]},
            "spec.subsets[0].trafficPolicy: traffic policy must set",
        ),
        # trafficPolicy
        (tp({}), "spec.trafficPolicy: traffic policy must set at least one field"),
        (
            tp(
                {
                    "tunnel": {"targetHost": "a.com", "targetPort": 80},
                    "proxyProtocol": {"version": "V1"},
                }
            ),
            "spec.trafficPolicy: tunnel and proxyProtocol cannot both be set",
        ),
        (
            tp({"portLevelSettings": [{"tls": {"mode": "SIMPLE"}}]}),
            "spec.trafficPolicy.portLevelSettings[0].port: required",
        ),
        (
            tp({"portLevelSettings": [{"port": {"number": 80}}]}),
            "spec.trafficPolicy.portLevelSettings[0]: port traffic policy must set",
        ),
        (
            tp(
                {
                    "portLevelSettings": [
                        {"port": {"number": 80}, "outlierDetection": {"interval": "0s"}}
                    ]
                }
            ),
            "spec.trafficPolicy.portLevelSettings[0].outlierDetection.interval",
        ),
        # connectionPool
        (pool({}), "spec.trafficPolicy.connectionPool: connection pool must set http and/or tcp"),
        (
            pool({"http": {"http1MaxPendingRequests": -1}}),
            "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests: must not be negative",
        ),
        (
            pool({"http": {"http2MaxRequests": -1}}),
            "spec.trafficPolicy.connectionPool.http.http2MaxRequests: must not be negative",
        ),
        (
            pool({"http": {"maxRequestsPerConnection": -1}}),
            "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection: must not",
        ),
        (
            pool({"http": {"maxRetries": -2}}),
            "spec.trafficPolicy.connectionPool.http.maxRetries: must not be negative",
        ),
        (
            pool({"http": {"maxConcurrentStreams": -1}}),
            "spec.trafficPolicy.connectionPool.http.maxConcurrentStreams: must not",
        ),
        (
            pool({"tcp": {"maxConnections": -1}}),
            "spec.trafficPolicy.connectionPool.tcp.maxConnections: must not be negative",
        ),
        (
            pool({"http": {"idleTimeout": "1.5ms"}}),
            "spec.trafficPolicy.connectionPool.http.idleTimeout: duration '1.5ms' must be a whole",
        ),
        (
            pool({"tcp": {"connectTimeout": "0s"}}),
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout: duration '0s' must be at least",
        ),
        (
            pool({"tcp": {"maxConnectionDuration": "soon"}}),
            "spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration: invalid duration",
        ),
        (
            pool({"tcp": {"idleTimeout": "-1s"}}),
            "spec.trafficPolicy.connectionPool.tcp.idleTimeout",
        ),
        (
            pool({"tcp": {"tcpKeepalive": {"time": "1x"}}}),
            "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time: invalid duration",
        ),
        (
            pool({"tcp": {"tcpKeepalive": {"interval": "0.1ms"}}}),
            "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.interval",
        ),
        (
            pool({"http": {"useClientProtocol": True, "h2UpgradePolicy": "UPGRADE"}}),
            "spec.trafficPolicy.connectionPool.http.useClientProtocol: useClientProtocol cannot",
        ),
        (
            pool({"http": {"http2KeepAlive": {"interval": "15s"}}}),
            "spec.trafficPolicy.connectionPool.http.http2KeepAlive.timeout: http2 keepalive needs",
        ),
        (
            pool({"http": {"h2UpgradePolicy": "ALWAYS"}}),
            "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: must be one of",
        ),
        # outlierDetection
        (
            outlier({"baseEjectionTime": "0s"}),
            "spec.trafficPolicy.outlierDetection.baseEjectionTime: duration '0s'",
        ),
        (
            outlier({"interval": "1.5ms"}),
            "spec.trafficPolicy.outlierDetection.interval: duration '1.5ms'",
        ),
        (
            outlier({"maxEjectionPercent": 101}),
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 101",
        ),
        (
            outlier({"minHealthPercent": -1}),
            "spec.trafficPolicy.outlierDetection.minHealthPercent: percentage -1",
        ),
        (
            outlier({"consecutiveLocalOriginFailures": 2}),
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures:",
        ),
        (
            outlier({"consecutive5xxErrors": -1}),
            "spec.trafficPolicy.outlierDetection.consecutive5xxErrors: must be >= 0",
        ),
        # loadBalancer
        (
            lb({"simple": "LEAST_CONN", "consistentHash": {"useSourceIp": True}}),
            "spec.trafficPolicy.loadBalancer: only one of simple or consistentHash",
        ),
        (lb({"simple": "FASTEST"}), "spec.trafficPolicy.loadBalancer.simple: must be one of"),
        (
            lb({"consistentHash": {"useSourceIp": True, "httpHeaderName": "x-user"}}),
            "spec.trafficPolicy.loadBalancer.consistentHash: only one hash key",
        ),
        (
            lb({"consistentHash": {"httpCookie": {"ttl": "10s"}}}),
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: required",
        ),
        (
            lb(
                {
                    "consistentHash": {
                        "httpCookie": {"name": "u", "attributes": [{"name": "a"}, {"name": "a"}]}
                    }
                }
            ),
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1].name:",
        ),
        (
            lb({"consistentHash": {"httpCookie": {"name": "u", "attributes": [{"value": "x"}]}}}),
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[0].name: cookie",
        ),
        (
            lb(
                {
                    "consistentHash": {
                        "useSourceIp": True,
                        "minimumRingSize": 10,
                        "ringHash": {"minimumRingSize": 10},
                    }
                }
            ),
            "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize: minimumRingSize",
        ),
        (
            lb(
                {
                    "consistentHash": {
                        "useSourceIp": True,
                        "ringHash": {},
                        "maglev": {"tableSize": 7},
                    }
                }
            ),
            "spec.trafficPolicy.loadBalancer.consistentHash: only one of ringHash or maglev",
        ),
        (
            lb({"consistentHash": {"useSourceIp": True, "maglev": {}}}),
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: maglev tableSize",
        ),
        (
            lb({"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 5000011}}}),
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: maglev tableSize",
        ),
        (
            lb({"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 65536}}}),
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: maglev tableSize",
        ),
        (
            lb({"warmup": {"minimumPercent": 5.0}}),
            "spec.trafficPolicy.loadBalancer.warmup.duration: required field is missing",
        ),
        (
            lb({"warmup": {"duration": "0s"}}),
            "spec.trafficPolicy.loadBalancer.warmup.duration: duration '0s'",
        ),
        (
            lb({"warmup": {"duration": "1s", "minimumPercent": 100.5}}),
            "spec.trafficPolicy.loadBalancer.warmup.minimumPercent: minimumPercent 100.5",
        ),
        (
            lb({"warmup": {"duration": "1s", "aggression": 0}}),
            "spec.trafficPolicy.loadBalancer.warmup.aggression: aggression 0",
        ),
        (
            lb({"warmupDurationSecs": "1.5ms"}),
            "spec.trafficPolicy.loadBalancer.warmupDurationSecs: duration",
        ),
        # locality load balancing
        (
            locality(
                {
                    "distribute": [{"from": "a", "to": {"b": 100}}],
                    "failover": [{"from": "a", "to": "b"}],
                }
            ),
            "spec.trafficPolicy.loadBalancer.localityLbSetting: distribute and failover cannot",
        ),
        (
            locality({"distribute": [{"from": "a", "to": {"b": 0, "c": 100}}]}),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to.b: locality",
        ),
        (
            locality({"distribute": [{"from": "a", "to": {"b": 60, "c": 30}}]}),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: locality weights",
        ),
        (
            locality({"distribute": [{"from": "a/*/c", "to": {"b": 100}}]}),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute: locality 'a/*/c': at",
        ),
        (
            locality({"distribute": [{"from": "a//c", "to": {"b": 100}}]}),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute: locality 'a//c' has an",
        ),
        (
            locality({"distribute": [{"from": "a", "to": {"b/*": 50, "b/z1": 50}}]}),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: locality 'b/z1'",
        ),
        (
            locality({"failover": [{"from": "us", "to": "us"}]}, outlierDetection={}),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: failover must name",
        ),
        (
            locality({"failover": [{"from": "us/z1", "to": "eu"}]}, outlierDetection={}),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: failover takes",
        ),
        (
            locality({"failover": [{"from": "us", "to": "*"}]}, outlierDetection={}),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: failover regions",
        ),
        (
            locality(
                {
                    "failover": [{"from": "us", "to": "eu"}],
                    "failoverPriority": ["topology.kubernetes.io/zone"],
                },
                outlierDetection={},
            ),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]: failover",
        ),
        # tunnel, proxyProtocol, retryBudget
        (
            tp({"tunnel": {"protocol": "GET", "targetHost": "a.com", "targetPort": 80}}),
            "spec.trafficPolicy.tunnel.protocol: tunnel protocol 'GET'",
        ),
        (
            tp({"tunnel": {"targetHost": "not a host", "targetPort": 80}}),
            "spec.trafficPolicy.tunnel.targetHost: 'not a host' must be",
        ),
        (
            tp({"tunnel": {"targetHost": "a.com", "targetPort": 0}}),
            "spec.trafficPolicy.tunnel.targetPort: port number 0",
        ),
        (
            tp({"proxyProtocol": {"version": "V3"}}),
            "spec.trafficPolicy.proxyProtocol.version: must be one of",
        ),
        (
            tp({"retryBudget": {"percent": 150.0}}),
            "spec.trafficPolicy.retryBudget.percent: percent 150.0",
        ),
        # client TLS
        (
            tls({"mode": "MUTUAL", "privateKey": "/k.pem"}),
            "spec.trafficPolicy.tls.clientCertificate: required for MUTUAL mode",
        ),
        (
            tls({"mode": "MUTUAL", "clientCertificate": "/c.pem"}),
            "spec.trafficPolicy.tls.privateKey: required for MUTUAL mode",
        ),
        (
            tls({"mode": "SIMPLE", "credentialName": "cred", "caCertificates": "/ca.pem"}),
            "spec.trafficPolicy.tls.caCertificates: cannot be set together with credentialName",
        ),
        (
            tls({"mode": "MUTUAL", "credentialName": "cred", "caCrl": "/crl.pem"}),
            "spec.trafficPolicy.tls.caCrl: cannot be set together with credentialName",
        ),
        (
            tls({"mode": "SIMPLE", "insecureSkipVerify": True, "subjectAltNames": ["a"]}),
            "spec.trafficPolicy.tls.subjectAltNames: cannot be set when insecureSkipVerify",
        ),
        (
            tls(
                {
                    "mode": "MUTUAL",
                    "insecureSkipVerify": True,
                    "caCertificates": "/ca.pem",
                    "clientCertificate": "/c",
                    "privateKey": "/k",
                }
            ),
            "spec.trafficPolicy.tls.caCertificates: cannot be set when insecureSkipVerify",
        ),
        (
            tls({"mode": "SIMPLE", "credentialName": "configmap://other/ca"}),
            "spec.trafficPolicy.tls.credentialName: 'configmap://other/ca' must reference",
        ),
        (tls({"mode": "STRICT"}), "spec.trafficPolicy.tls.mode: must be one of"),
        # exportTo and workloadSelector
        ({"host": HOST, "exportTo": ["Bad_NS"]}, "spec.exportTo[0]: 'Bad_NS' must be"),
        ({"host": HOST, "exportTo": [".", "default"]}, "spec.exportTo[1]: duplicate entries"),
        (
            {"host": HOST, "exportTo": ["*", "foo"]},
            "spec.exportTo: '*' (all namespaces) cannot be combined",
        ),
        ({"host": HOST, "exportTo": ["~"]}, "spec.exportTo[0]: exportTo '~' (none) is not allowed"),
        (
            {
                "host": HOST,
                "exportTo": ["other"],
                "workloadSelector": {"matchLabels": {"app": "a"}},
            },
            "spec.exportTo: a destination rule with a workloadSelector",
        ),
        (
            {"host": HOST, "workloadSelector": {"matchLabels": {"app": "*"}}},
            "spec.workloadSelector.matchLabels: wildcard is not supported",
        ),
        # schema
        (
            {"host": HOST, "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}, "foo": 1}},
            "spec.trafficPolicy.foo: unknown field",
        ),
        (
            pool({"tcp": {"maxConnections": "10"}}),
            "spec.trafficPolicy.connectionPool.tcp.maxConnections: must be an integer",
        ),
    ],
)
def test_invalid_rules_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check("DestinationRule", spec)
    assert not result.ok
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            outlier({"consecutiveErrors": 5}),
            "spec.trafficPolicy.outlierDetection.consecutiveErrors: consecutiveErrors is",
        ),
        (
            lb({"consistentHash": {"useSourceIp": True, "minimumRingSize": 64}}),
            "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize: minimumRingSize is",
        ),
        (
            locality({"failover": [{"from": "us", "to": "eu"}]}),
            "spec.trafficPolicy.loadBalancer.localityLbSetting: failover needs an outlierDetection",
        ),
        ({"host": HOST, "workloadSelector": {}}, "spec.workloadSelector: selector has no labels"),
    ],
)
def test_warnings_are_accepted(spec: dict[str, Any], expected: str) -> None:
    result = check("DestinationRule", spec)
    assert result.ok, errors(result)
    assert any(w.startswith(expected) for w in warnings(result)), warnings(result)
