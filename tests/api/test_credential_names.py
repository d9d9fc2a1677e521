"""A gateway's credentialName -> the SDS name Pilot asks for -> what Citadel reads back."""

from __future__ import annotations

import pytest

from api.credential_names import (
    SdsCredential,
    ca_sds_name,
    namespaced,
    parse_sds_name,
    problem,
    sds_name,
)
from api.resources import check_text


@pytest.mark.parametrize(
    ("credential_name", "sds", "ca", "parsed"),
    [
        ("web", "kubernetes://web", "kubernetes://web-cacert", SdsCredential(None, "web", False)),
        (
            namespaced("certs", "web"),
            "kubernetes-gateway://certs/web",
            "kubernetes-gateway://certs/web-cacert",
            SdsCredential("certs", "web", False),
        ),
    ],
)
def test_names_round_trip(credential_name: str, sds: str, ca: str, parsed: SdsCredential) -> None:
    assert sds_name(credential_name) == sds
    assert ca_sds_name(credential_name) == ca
    assert parse_sds_name(sds) == parsed
    assert parse_sds_name(ca) == SdsCredential(parsed.namespace, parsed.name, True)


@pytest.mark.parametrize(
    "resource",
    [
        "web",
        "kubernetes://",
        "kubernetes://a/b",
        "kubernetes://-cacert",
        "kubernetes-gateway://web",
        "kubernetes-gateway:///web",
        "kubernetes-gateway://Certs/web",
        "kubernetes-gateway://certs/a/b",
        "kubernetes-gateway://certs/",
        "file:///etc/cert.pem",
    ],
)
def test_anything_else_is_no_credential(resource: str) -> None:
    assert parse_sds_name(resource) is None


@pytest.mark.parametrize(
    ("credential_name", "served"),
    [
        ("web", True),
        ("kubernetes://web", True),  # already an SDS name, kept as written (as Istio)
        ("kubernetes-gateway://certs/web", True),
        ("a/b", False),
        ("kubernetes-gateway://web", False),
        ("Web", False),
    ],
)
def test_a_gateway_credential_citadel_could_never_serve_is_refused(
    credential_name: str, served: bool
) -> None:
    doc = f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [shop.example.com]
    tls: {{mode: SIMPLE, credentialName: "{credential_name}"}}
"""
    (checked,) = check_text(doc, "t.yaml")
    found = [str(e) for e in checked.errors]
    if served:
        assert found == [] and sds_name(credential_name).startswith("kubernetes")
    else:
        assert found == [f"spec.servers[0].tls.credentialName: {problem(credential_name)}"], found
