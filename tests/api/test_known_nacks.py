"""Documents validation accepts that Envoy NACKs, or that Pilot cannot build at all.

Found by the no-NACK property test (tests/e2e/test_no_nack_property.py) and
confirmed on the wire. Each must become a validation error: until it does, its
case here is an expected failure, and a strict one, so that the fix turns it
into a failure to remove the mark (then add the value back to the property
test's vocabulary: tests/strategies.py KNOWN_NACKS).
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


CASES = {
    # CDS NACK: RingHashLbConfig.minimum_ring_size must be <= 8388608.
    "ring-size-over-envoy-max": _dr(
        {
            "loadBalancer": {
                "consistentHash": {"httpHeaderName": "x", "ringHash": {"minimumRingSize": 8388609}}
            }
        }
    ),
    # RDS NACK: DirectResponseAction.status must be in [200, 600).
    "direct-response-600": _vs({"directResponse": {"status": 600}}),
    # RDS NACK: FaultAbort.http_status must be in [200, 600).
    "abort-600": _vs({"route": ROUTE, "fault": {"abort": {"httpStatus": 600}}}),
    # RDS NACK: QueryParameterMatcher.name must not be empty.
    "empty-query-parameter-name": _vs(
        {"match": [{"queryParams": {"": {"exact": "a"}}}], "route": ROUTE}
    ),
    # ECDS NACK (jwt_authn): "Jwks doesn't have any valid public key".
    "jwks-without-keys": _doc(
        "RequestAuthentication",
        "security.istio.io/v1",
        {"jwtRules": [{"issuer": "iss", "jwks": '{"keys":[]}'}]},
    ),
    # RDS NACK: a protobuf Duration holds at most 315576000000s (any duration field).
    "duration-beyond-protobuf-range": _vs({"route": ROUTE, "timeout": "100000000h"}),
    # Pilot exits: keepalive seconds go into a UInt32Value (ValueError in PushContext.build).
    "keepalive-beyond-uint32": _dr(
        {"connectionPool": {"tcp": {"tcpKeepalive": {"time": "4294967296s"}}}}
    ),
    # Pilot exits (in PushContext.build) or fails every push of the type (RDS here): a
    # lone surrogate, which a JSON "\ud800" escape makes, cannot be encoded in a proto.
    "lone-surrogate-in-sni": _dr(
        {"tls": {"mode": "SIMPLE", "insecureSkipVerify": True, "sni": "a\ud800"}}
    ),
    "lone-surrogate-in-header-match": _vs(
        {"match": [{"headers": {"x": {"exact": "\ud800"}}}], "route": ROUTE}
    ),
    # Not a NACK: Pilot fails the rule closed (and analysis warns); Istio refuses it.
    "netmask-ip-block": _doc(
        "AuthorizationPolicy",
        "security.istio.io/v1",
        {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/255.0.0.0"]}}]}]},
    ),
}


@pytest.mark.xfail(strict=True, reason="accepted by validation today; see the case's comment")
@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_refuses(case: str) -> None:
    assert not check_document(CASES[case], "known-nack").ok
