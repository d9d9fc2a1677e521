"""SDS for gateway credentials, driven through a fake gRPC context (no network,
`tests.citadel.sds_fakes`).

A gateway's token gets ``kubernetes://NAME`` and ``kubernetes://NAME-cacert`` of
its own namespace, pushed when they are created, changed or deleted; anyone
else asking for one is refused; ``default`` and ``ROOTCA`` behave as before.
(Another namespace's, allowed by a ReferenceGrant: test_sds_cross_namespace.py.)
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import grpc
import pytest

from citadel.sds import ROOT_SECRET, WORKLOAD_SECRET
from tests.citadel.helpers import key_body, make_ca, make_server, tls_doc
from tests.citadel.sds_fakes import Citadel, secrets, served_cert, store

CA = make_ca("clients CA")
SERVER = make_server(CA)


async def test_default_and_rootca_are_unchanged(citadel: Citadel, streams: Any) -> None:
    s = streams("shop", "reviews", gateway=False)
    s.send([WORKLOAD_SECRET, ROOT_SECRET])
    first = await s.response()
    got = secrets(first)
    assert sorted(got) == [ROOT_SECRET, WORKLOAD_SECRET]
    cert = citadel.cache.get("shop", "reviews")
    assert served_cert(got[WORKLOAD_SECRET]) == cert.cert_chain_pem
    assert got[ROOT_SECRET].validation_context.trusted_ca.inline_bytes == (
        citadel.ca.root_bundle_pem()
    )
    digest = hashlib.blake2b(digest_size=8)  # the version as it always was
    digest.update(f"{cert.serial:x}".encode())
    digest.update(citadel.ca.root_bundle_pem())
    assert first.version_info == digest.hexdigest()
    s.send([WORKLOAD_SECRET, ROOT_SECRET], last=first)  # ACK: nothing more
    await s.nothing()


async def test_a_gateway_gets_its_namespaces_credential_and_updates(
    citadel: Citadel, streams: Any
) -> None:
    v1 = store(citadel.credentials, "shop", "web-cert", tls_doc(SERVER))
    s = streams("shop")
    s.send(["kubernetes://web-cert"])
    first = await s.response()
    secret = secrets(first)["kubernetes://web-cert"]
    assert served_cert(secret) == v1.cert_chain_pem
    assert secret.tls_certificate.private_key.inline_bytes == v1.key_pem
    s.send(["kubernetes://web-cert"], last=first)
    await s.nothing()

    renewed = make_server(CA)
    store(citadel.credentials, "shop", "web-cert", tls_doc(renewed))
    second = await s.response()
    assert second.version_info != first.version_info
    assert served_cert(secrets(second)["kubernetes://web-cert"]) == renewed.cert_pem.encode()
    s.send(["kubernetes://web-cert"], last=second)
    # A change elsewhere in the namespace wakes the stream but sends nothing.
    store(citadel.credentials, "shop", "unrelated", tls_doc(SERVER))
    await s.nothing()


async def test_another_namespaces_credential_is_absent_until_its_own_exists(
    citadel: Citadel, streams: Any
) -> None:
    store(citadel.credentials, "other", "web-cert", tls_doc(SERVER))
    s = streams("shop")
    s.send(["kubernetes://web-cert"])
    # Absent: no answer (an empty one would be NACKed and end the listener's wait).
    await s.nothing()
    assert not s.task.done()
    mine = store(citadel.credentials, "shop", "web-cert", tls_doc(make_server(CA)))
    resp = await s.response()
    assert served_cert(secrets(resp)["kubernetes://web-cert"]) == mine.cert_chain_pem


async def test_deleted_is_answered_without_it(citadel: Citadel, streams: Any) -> None:
    store(citadel.credentials, "shop", "web-cert", tls_doc(SERVER))
    s = streams("shop")
    names = ["kubernetes://web-cert", ROOT_SECRET]
    s.send(names)
    first = await s.response()
    assert sorted(secrets(first)) == [ROOT_SECRET, "kubernetes://web-cert"]
    s.send(names, last=first)
    citadel.credentials.remove("shop", "web-cert")
    second = await s.response()
    assert sorted(secrets(second)) == [ROOT_SECRET]
    s.send(names, last=second)
    again = store(citadel.credentials, "shop", "web-cert", tls_doc(make_server(CA)))
    third = await s.response()
    assert served_cert(secrets(third)["kubernetes://web-cert"]) == again.cert_chain_pem


async def test_deleting_the_only_name_of_a_stream_sends_nothing(
    citadel: Citadel, streams: Any
) -> None:
    store(citadel.credentials, "shop", "web-cert", tls_doc(SERVER))
    s = streams("shop")
    s.send(["kubernetes://web-cert"])
    first = await s.response()
    s.send(["kubernetes://web-cert"], last=first)
    citadel.credentials.remove("shop", "web-cert")
    await s.nothing()
    store(citadel.credentials, "shop", "web-cert", tls_doc(make_server(CA)))
    assert secrets(await s.response())


async def test_non_gateway_tokens_are_refused_gateway_credentials(
    citadel: Citadel, streams: Any
) -> None:
    store(citadel.credentials, "shop", "web-cert", tls_doc(SERVER))
    s = streams("shop", "reviews", gateway=False)
    s.send([WORKLOAD_SECRET, "kubernetes://web-cert"])
    refused = await s.refused()
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED
    assert "kubernetes://web-cert" in refused.details and "gateway" in refused.details
    assert citadel.metrics.auth_failures.labels("not_gateway")._value.get() == 1
    assert s.ctx.responses.empty()


@pytest.mark.parametrize(
    "name",
    ["kubernetes://", "kubernetes://Web", "kubernetes://a/b", "kubernetes://-cacert", "web-cert"],
)
async def test_names_that_are_no_credential_stay_not_found(
    citadel: Citadel, streams: Any, name: str
) -> None:
    s = streams("shop", gateway=True)
    s.send([name])
    refused = await s.refused()
    assert refused.code is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("source", ["own caCert", "NAME-cacert generic", "NAME-cacert tls cert"])
async def test_cacert_resolution(citadel: Citadel, streams: Any, source: str) -> None:
    creds = citadel.credentials
    other_ca = make_ca("other CA")
    if source == "own caCert":
        store(creds, "shop", "web", tls_doc(SERVER, CA))
        store(creds, "shop", "web-cacert", {"type": "generic", "caCert": other_ca.cert_pem})
        expected = CA.cert_pem
    elif source == "NAME-cacert generic":
        store(creds, "shop", "web", tls_doc(SERVER))
        store(creds, "shop", "web-cacert", {"type": "generic", "caCert": CA.cert_pem})
        expected = CA.cert_pem
    else:  # no caCert anywhere: the NAME-cacert credential's own certificate is the CA
        ca_as_tls = make_server(other_ca)
        store(creds, "shop", "web-cacert", tls_doc(ca_as_tls))
        expected = ca_as_tls.cert_pem
    s = streams("shop")
    s.send(["kubernetes://web-cacert"])
    got = secrets(await s.response())
    assert list(got) == ["kubernetes://web-cacert"]
    secret = got["kubernetes://web-cacert"]
    assert secret.validation_context.trusted_ca.inline_bytes == expected.encode()
    assert not secret.HasField("tls_certificate")


async def test_cacert_with_no_source_is_absent_then_pushed(citadel: Citadel, streams: Any) -> None:
    store(citadel.credentials, "shop", "web", tls_doc(SERVER))  # no caCert
    s = streams("shop")
    s.send(["kubernetes://web-cacert"])
    await s.nothing()
    store(citadel.credentials, "shop", "web", tls_doc(SERVER, CA))  # now it has one
    resp = await s.response()
    assert secrets(resp)["kubernetes://web-cacert"].validation_context.trusted_ca.inline_bytes


async def test_several_names_in_one_stream(citadel: Citadel, streams: Any) -> None:
    store(citadel.credentials, "shop", "web", tls_doc(SERVER, CA))
    s = streams("shop")
    names = [WORKLOAD_SECRET, ROOT_SECRET, "kubernetes://web", "kubernetes://web-cacert"]
    s.send(names)
    got = secrets(await s.response())
    assert sorted(got) == sorted(names)


async def test_a_generic_credential_is_no_certificate(citadel: Citadel, streams: Any) -> None:
    store(citadel.credentials, "shop", "ca-only", {"type": "generic", "caCert": CA.cert_pem})
    s = streams("shop")
    s.send(["kubernetes://ca-only", ROOT_SECRET])
    assert sorted(secrets(await s.response())) == [ROOT_SECRET]


async def test_logs_name_credentials_never_keys(
    citadel: Citadel, streams: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cred = store(citadel.credentials, "shop", "web", tls_doc(SERVER, CA))
    s = streams("shop")
    s.send(["kubernetes://web", "kubernetes://missing"])
    await s.response()
    denied = streams("shop", "app", gateway=False)
    denied.send(["kubernetes://web"])
    await denied.refused()
    assert "kubernetes://missing" in caplog.text and "kubernetes://web" in caplog.text
    for key in (cred.key_pem, SERVER.key_pem):
        assert key_body(key) not in caplog.text
