"""SDS for another namespace's gateway credential (``kubernetes-gateway://NS/NAME``, what
a Gateway API certificateRef to another namespace becomes), through the fake gRPC
context of `tests.citadel.sds_fakes`.

It is sent to a gateway's token only while a ReferenceGrant in NS allows Gateways of
the token's namespace to use that Secret; otherwise it is left out of the answer (as
Istio's SDS leaves it out), and a change of the grants is re-evaluated on open streams
as a change of the credentials is.
"""

from __future__ import annotations

import logging

import grpc
import pytest

from api.resources import Resource
from citadel.sds import ROOT_SECRET
from tests.citadel.helpers import key_body, make_ca, make_server, tls_doc
from tests.citadel.sds_fakes import Citadel, OpenStream, grant, secrets, served_cert, store

CA = make_ca("cross-namespace CA")
SERVER = make_server(CA)
WEB = "kubernetes-gateway://certs/web-cert"


async def test_served_while_a_grant_allows_it(citadel: Citadel, streams: OpenStream) -> None:
    cred = store(citadel.credentials, "certs", "web-cert", tls_doc(SERVER))
    citadel.grants.replace([grant("certs", "shop", "web-cert")])
    s = streams("shop")
    s.send([WEB])
    got = secrets(await s.response())
    assert list(got) == [WEB]
    assert served_cert(got[WEB]) == cred.cert_chain_pem
    assert got[WEB].tls_certificate.private_key.inline_bytes == cred.key_pem


async def test_left_out_without_a_grant_then_sent_when_one_appears(
    citadel: Citadel, streams: OpenStream
) -> None:
    store(citadel.credentials, "certs", "web-cert", tls_doc(SERVER))
    s = streams("shop")
    s.send([WEB, ROOT_SECRET])
    first = await s.response()
    assert list(secrets(first)) == [ROOT_SECRET]  # left out, the stream goes on
    s.send([WEB, ROOT_SECRET], last=first)
    await s.nothing()
    citadel.grants.replace([grant("certs", "shop")])  # any Secret of certs
    second = await s.response()
    assert sorted(secrets(second)) == [ROOT_SECRET, WEB]
    assert second.version_info != first.version_info


async def test_no_longer_sent_once_the_grant_is_deleted(
    citadel: Citadel, streams: OpenStream
) -> None:
    store(citadel.credentials, "certs", "web-cert", tls_doc(SERVER))
    citadel.grants.replace([grant("certs", "shop", "web-cert")])
    s = streams("shop")
    s.send([WEB, ROOT_SECRET])
    first = await s.response()
    assert sorted(secrets(first)) == [ROOT_SECRET, WEB]
    s.send([WEB, ROOT_SECRET], last=first)
    await s.nothing()
    citadel.grants.replace([])
    second = await s.response()
    assert list(secrets(second)) == [ROOT_SECRET]
    s.send([WEB, ROOT_SECRET], last=second)
    await s.nothing()
    # Unreadable grants (Consul away) are no grants either.
    citadel.grants.replace([grant("certs", "shop", "web-cert")])
    third = await s.response()
    s.send([WEB, ROOT_SECRET], last=third)
    citadel.grants.replace(None)
    assert list(secrets(await s.response())) == [ROOT_SECRET]


@pytest.mark.parametrize(
    ("gateway_namespace", "the_grant"),
    [
        ("cart", grant("certs", "shop")),  # another namespace's gateway
        ("shop", grant("certs", "shop", "other-cert")),  # another Secret
        ("shop", grant("shop", "shop")),  # a grant in the wrong namespace
        ("shop", grant("certs", "shop", from_kind="HTTPRoute")),  # for routes, not Gateways
    ],
    ids=["other-gateway-namespace", "other-secret", "grant-elsewhere", "route-kind"],
)
async def test_refused_when_no_grant_fits(
    citadel: Citadel, streams: OpenStream, gateway_namespace: str, the_grant: Resource
) -> None:
    store(citadel.credentials, "certs", "web-cert", tls_doc(SERVER))
    store(citadel.credentials, "certs", "other-cert", tls_doc(SERVER))
    citadel.grants.replace([the_grant])
    s = streams(gateway_namespace)
    s.send([WEB, ROOT_SECRET])
    assert list(secrets(await s.response())) == [ROOT_SECRET]
    assert not s.task.done()


async def test_changes_in_the_credentials_namespace_are_pushed(
    citadel: Citadel, streams: OpenStream
) -> None:
    citadel.grants.replace([grant("certs", "shop", "web-cert")])
    s = streams("shop")
    s.send([WEB])
    await s.nothing()  # granted, but not created yet
    v1 = store(citadel.credentials, "certs", "web-cert", tls_doc(SERVER))
    first = await s.response()
    assert served_cert(secrets(first)[WEB]) == v1.cert_chain_pem
    s.send([WEB], last=first)
    v2 = store(citadel.credentials, "certs", "web-cert", tls_doc(make_server(CA)))
    assert served_cert(secrets(await s.response())[WEB]) == v2.cert_chain_pem


async def test_its_own_namespace_needs_no_grant(citadel: Citadel, streams: OpenStream) -> None:
    cred = store(citadel.credentials, "shop", "web-cert", tls_doc(SERVER))
    s = streams("shop")
    s.send(["kubernetes-gateway://shop/web-cert"])
    got = secrets(await s.response())
    assert served_cert(got["kubernetes-gateway://shop/web-cert"]) == cred.cert_chain_pem


async def test_the_ca_form_needs_a_grant_for_the_credential_it_is_read_from(
    citadel: Citadel, streams: OpenStream
) -> None:
    store(citadel.credentials, "certs", "web", tls_doc(SERVER))  # no caCert of its own
    store(citadel.credentials, "certs", "web-cacert", {"type": "generic", "caCert": CA.cert_pem})
    citadel.grants.replace([grant("certs", "shop", "web")])
    name = "kubernetes-gateway://certs/web-cacert"
    s = streams("shop")
    s.send([name, ROOT_SECRET])
    first = await s.response()
    assert list(secrets(first)) == [ROOT_SECRET]  # the bundle is web-cacert's: not granted
    s.send([name, ROOT_SECRET], last=first)
    citadel.grants.replace([grant("certs", "shop", "web"), grant("certs", "shop", "web-cacert")])
    got = secrets(await s.response())
    assert got[name].validation_context.trusted_ca.inline_bytes == CA.cert_pem.encode()


async def test_non_gateway_tokens_are_refused(citadel: Citadel, streams: OpenStream) -> None:
    citadel.grants.replace([grant("certs", "shop")])
    s = streams("shop", "reviews", gateway=False)
    s.send([WEB])
    refused = await s.refused()
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    "name",
    [
        "kubernetes-gateway://certs",
        "kubernetes-gateway://certs/",
        "kubernetes-gateway:///web-cert",
        "kubernetes-gateway://Certs/web-cert",
        "kubernetes-gateway://certs/a/b",
        "kubernetes-gateway://certs/-cacert",
    ],
)
async def test_malformed_names_stay_not_found(streams: OpenStream, name: str) -> None:
    s = streams("shop")
    s.send([name])
    assert (await s.refused()).code is grpc.StatusCode.NOT_FOUND


async def test_a_refusal_is_logged_by_name_never_the_key(
    citadel: Citadel, streams: OpenStream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cred = store(citadel.credentials, "certs", "web-cert", tls_doc(SERVER))
    s = streams("shop")
    s.send([WEB, ROOT_SECRET])
    await s.response()
    assert WEB in caplog.text and "ReferenceGrant" in caplog.text
    citadel.grants.replace([grant("certs", "shop")])
    await s.response()
    assert key_body(cred.key_pem) not in caplog.text
