"""Documents validation once accepted that Envoy NACKs, or that Pilot could not build.

Found by the no-NACK property test (tests/e2e/test_no_nack_property.py) and
confirmed on the wire; each is now a validation error at its field path (and
the values stay in the property test's draws: tests/strategies.py KNOWN_NACKS).
"""

from __future__ import annotations

from typing import Any

import pytest

from api.resources import check_document

ROUTE = [{"destination": {"host": "reviews"}}]


def _doc(kind: str, group: str, spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "x", "namespace": "default"}
    return {"apiVersion": group, "kind": kind, "metadata": meta, "spec": spec}


def _vs(rule: dict[str, Any]) -> dict[str, Any]:
    return _doc("VirtualService", "networking.istio.io/v1", {"hosts": ["reviews"], "http": [rule]})


def _dr(policy: dict[str, Any]) -> dict[str, Any]:
    spec = {"host": "reviews", "trafficPolicy": policy}
    return _doc("DestinationRule", "networking.istio.io/v1", spec)


CASES: dict[str, tuple[dict[str, Any], str]] = {
    # CDS NACK: RingHashLbConfig.minimum_ring_size must be <= 8388608.
    "ring-size-over-envoy-max": (
        _dr(
            {
                "loadBalancer": {
                    "consistentHash": {
                        "httpHeaderName": "x",
                        "ringHash": {"minimumRingSize": 8388609},
                    }
                }
            }
        ),
        "spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize",
    ),
    # RDS NACK: DirectResponseAction.status must be in [200, 600).
    "direct-response-600": (
        _vs({"directResponse": {"status": 600}}),
        "spec.http[0].directResponse.status",
    ),
    # RDS NACK: FaultAbort.http_status must be in [200, 600).
    "abort-600": (
        _vs({"route": ROUTE, "fault": {"abort": {"httpStatus": 600}}}),
        "spec.http[0].fault.abort.httpStatus",
    ),
    # RDS NACK: QueryParameterMatcher.name must not be empty.
    "empty-query-parameter-name": (
        _vs({"match": [{"queryParams": {"": {"exact": "a"}}}], "route": ROUTE}),
        "spec.http[0].match[0].queryParams",
    ),
    # ECDS NACK (jwt_authn): "Jwks doesn't have any valid public key".
    "jwks-without-keys": (
        _doc(
            "RequestAuthentication",
            "security.istio.io/v1",
            {"jwtRules": [{"issuer": "iss", "jwks": '{"keys":[]}'}]},
        ),
        "spec.jwtRules[0].jwks",
    ),
    # RDS NACK: a protobuf Duration holds at most 315576000000s (any duration field).
    "duration-beyond-protobuf-range": (
        _vs({"route": ROUTE, "timeout": "100000000h"}),
        "spec.http[0].timeout",
    ),
    # Pilot exited: keepalive seconds go into a UInt32Value.
    "keepalive-beyond-uint32": (
        _dr({"connectionPool": {"tcp": {"tcpKeepalive": {"time": "4294967296s"}}}}),
        "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time",
    ),
    # Pilot exited (or failed every push of the type): a lone surrogate, which a JSON
    # "\ud800" escape makes, cannot be encoded in a proto (nor stored as UTF-8).
    "lone-surrogate-in-sni": (
        _dr({"tls": {"mode": "SIMPLE", "insecureSkipVerify": True, "sni": "a\ud800"}}),
        "spec.trafficPolicy.tls.sni",
    ),
    "lone-surrogate-in-header-match": (
        _vs({"match": [{"headers": {"x": {"exact": "\ud800"}}}], "route": ROUTE}),
        "spec.http[0].match[0].headers.x.exact",
    ),
    # Not a NACK: Pilot failed the rule closed; Istio refuses a netmask as a prefix length.
    "netmask-ip-block": (
        _doc(
            "AuthorizationPolicy",
            "security.istio.io/v1",
            {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/255.0.0.0"]}}]}]},
        ),
        "spec.rules[0].from[0].source.ipBlocks[0]",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_refuses_at_the_field(case: str) -> None:
    doc, path = CASES[case]
    checked = check_document(doc, "known-nack")
    assert not checked.ok
    paths = [str(i).partition(": ")[0] for i in checked.errors]
    assert path in paths, [str(i) for i in checked.errors]
