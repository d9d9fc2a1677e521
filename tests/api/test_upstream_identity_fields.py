"""Fields Pilot now translates (no "not applied" warning), the limits its translation
needs (refused, never sent to Envoy), and WorkloadGroup's probe (warned: not run)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import check, errors, other_warnings, warnings

NOT_APPLIED = "accepted but not applied by this mesh"
HOST = "ratings.prod.svc.cluster.local"


def not_applied(found: list[str]) -> list[str]:
    return [w.split(":", 1)[0] for w in found if NOT_APPLIED in w]


def test_service_entry_identities_and_location_are_applied() -> None:
    spec = {
        "hosts": ["db.vm.internal"],
        "ports": [{"number": 5432, "name": "http", "protocol": "HTTP"}],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "subjectAltNames": ["spiffe://cluster.local/ns/db/sa/db", "db.vm.internal"],
        "endpoints": [{"address": "192.0.2.1", "serviceAccount": "db"}],
    }
    result = check("ServiceEntry", spec)
    assert result.ok, errors(result)
    assert warnings(result) == []


def policy_levels(policy: dict[str, Any]) -> dict[str, Any]:
    """The same traffic policy at every level Pilot merges."""
    port_level = {"port": {"number": 9080}, **policy}
    with_ports = {**policy, "portLevelSettings": [port_level]}
    return {
        "host": HOST,
        "trafficPolicy": with_ports,
        "subsets": [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": with_ports}],
    }


def test_ca_crl_is_applied_at_every_level() -> None:
    tls = {"mode": "SIMPLE", "caCertificates": "/etc/certs/ca.pem", "caCrl": "/etc/certs/crl"}
    result = check("DestinationRule", policy_levels({"tls": tls}))
    assert result.ok, errors(result)
    assert warnings(result) == []
    mutual = {"mode": "ISTIO_MUTUAL", "caCrl": "/etc/certs/crl"}
    result = check("DestinationRule", policy_levels({"tls": mutual}))
    assert result.ok, errors(result)
    assert warnings(result) == []


@pytest.mark.parametrize("mode", ["SIMPLE", "MUTUAL"])
def test_ca_crl_without_verification_is_refused_at_every_level(mode: str) -> None:
    tls = {"mode": mode, "insecureSkipVerify": True, "caCrl": "/etc/certs/crl"}
    if mode == "MUTUAL":
        tls |= {"clientCertificate": "/c.pem", "privateKey": "/k.pem"}
    result = check("DestinationRule", policy_levels({"tls": tls}))
    message = (
        "cannot be set when insecureSkipVerify is true: an unverified server certificate "
        "cannot be checked for revocation"
    )
    assert errors(result) == [
        f"{at}.tls.caCrl: {message}"
        for at in (
            "spec.trafficPolicy",
            "spec.trafficPolicy.portLevelSettings[0]",
            "spec.subsets[0].trafficPolicy",
            "spec.subsets[0].trafficPolicy.portLevelSettings[0]",
        )
    ]


def cookie(attributes: list[dict[str, str]]) -> dict[str, Any]:
    lb = {"consistentHash": {"httpCookie": {"name": "s", "ttl": "60s", "attributes": attributes}}}
    return {"host": HOST, "trafficPolicy": {"loadBalancer": lb}}


def test_cookie_ttl_and_attributes_are_applied() -> None:
    result = check("DestinationRule", cookie([{"name": "SameSite", "value": "Lax"}]))
    assert result.ok, errors(result)
    assert warnings(result) == []


@pytest.mark.parametrize(
    ("attribute", "field"),
    [
        ({"name": "SameSite", "value": "Lax\r\nSet-Cookie: x=y"}, "value"),
        ({"name": "Same\nSite"}, "name"),
        ({"name": "Secure", "value": "\x00"}, "value"),
        ({"name": "Path", "value": "x" * 16385}, "value"),
    ],
)
def test_cookie_attributes_envoy_refuses_are_refused(attribute: dict[str, str], field: str) -> None:
    [error] = errors(check("DestinationRule", cookie([attribute])))
    assert error.startswith(
        f"spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[0].{field}: "
    )


def test_retry_ignore_previous_hosts_is_applied() -> None:
    http = {
        "route": [{"destination": {"host": HOST}}],
        "retries": {"attempts": 2, "retryIgnorePreviousHosts": False},
    }
    result = check("VirtualService", {"hosts": [HOST], "http": [http]})
    assert result.ok, errors(result)
    assert warnings(result) == []


def test_workload_group_probe_is_not_run_and_says_so() -> None:
    spec = {
        "metadata": {"labels": {"app": "vm"}},
        "template": {"serviceAccount": "vm"},
        "probe": {"httpGet": {"port": 8080, "path": "/ready"}, "periodSeconds": 5},
    }
    result = check("WorkloadGroup", spec)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    assert not_applied(warnings(result)) == ["spec.probe"]
    [probe] = [w for w in warnings(result) if w.startswith("spec.probe:")]
    assert "the probe is not run" in probe and "Consul health checks" in probe
