"""SDS for gateway credentials, driven through a fake gRPC context (no network).

A gateway's token gets ``kubernetes://NAME`` and ``kubernetes://NAME-cacert`` of
its own namespace, pushed when they are created, changed or deleted; anyone
else asking for one is refused; ``default`` and ``ROOTCA`` behave as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from citadel.ca import CertificateAuthority
from citadel.credentials import CredentialMap, GatewayCredential, credential_from_document
from citadel.metrics import CitadelMetrics
from citadel.sds import ROOT_SECRET, SECRET_TYPE, WORKLOAD_SECRET, IdentityCache, SdsServer
from citadel.tokens import TokenSigner
from tests.citadel.helpers import key_body, make_ca, make_server, tls_doc

CA = make_ca("clients CA")
SERVER = make_server(CA)
_revisions = itertools.count(1)


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class FakeContext:
    """The parts of grpc.aio.ServicerContext the SDS stream uses."""

    def __init__(self, token: str | None) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.requests: asyncio.Queue[object] = asyncio.Queue()
        self.responses: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()

    def invocation_metadata(self) -> Sequence[tuple[str, str]]:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def read(self) -> object:
        return await self.requests.get()

    async def write(self, raw: bytes) -> None:
        await self.responses.put(discovery_pb2.DiscoveryResponse.FromString(raw))

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


@dataclass
class Citadel:
    sds: SdsServer
    signer: TokenSigner
    credentials: CredentialMap
    metrics: CitadelMetrics
    ca: CertificateAuthority
    cache: IdentityCache


@dataclass
class Stream:
    ctx: FakeContext
    task: asyncio.Task[None]

    def send(
        self, names: Sequence[str], last: discovery_pb2.DiscoveryResponse | None = None
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(type_url=SECRET_TYPE, resource_names=list(names))
        if last is not None:  # an ACK of it
            req.version_info, req.response_nonce = last.version_info, last.nonce
        self.ctx.requests.put_nowait(req.SerializeToString())

    async def response(self) -> discovery_pb2.DiscoveryResponse:
        return await asyncio.wait_for(self.ctx.responses.get(), timeout=5)

    async def nothing(self) -> None:
        await asyncio.sleep(0.2)
        assert self.ctx.responses.empty(), self.ctx.responses.get_nowait()

    async def refused(self) -> Aborted:
        with pytest.raises(Aborted) as info:
            await asyncio.wait_for(self.task, timeout=5)
        return info.value


def secrets(resp: discovery_pb2.DiscoveryResponse) -> dict[str, secret_pb2.Secret]:
    out = {}
    for packed in resp.resources:
        secret = secret_pb2.Secret()
        assert packed.Unpack(secret)
        out[secret.name] = secret
    return out


@pytest.fixture
async def citadel(tmp_path: Path) -> AsyncIterator[Citadel]:
    ca = CertificateAuthority.load_or_create(tmp_path, "cluster.local")
    metrics = CitadelMetrics()
    cache = IdentityCache(ca, datetime.timedelta(hours=1), metrics)
    signer = TokenSigner.load_or_create(tmp_path / "token-key.pem")
    credentials = CredentialMap()
    yield Citadel(
        SdsServer(cache, signer, metrics, credentials), signer, credentials, metrics, ca, cache
    )


@pytest.fixture
async def streams(citadel: Citadel) -> AsyncIterator[Any]:
    """Open streams (namespace, sa, gateway role); every one is ended when the test ends."""
    opened: list[Stream] = []

    def open_stream(namespace: str = "shop", sa: str = "gw", gateway: bool = True) -> Stream:
        ctx = FakeContext(citadel.signer.mint(namespace, sa, 600, gateway=gateway))
        stream = Stream(ctx, asyncio.create_task(citadel.sds._stream(None, ctx)))  # type: ignore[arg-type]
        opened.append(stream)
        return stream

    yield open_stream
    for stream in opened:
        stream.ctx.requests.put_nowait(grpc.aio.EOF)
    await asyncio.gather(*(s.task for s in opened), return_exceptions=True)
    assert citadel.credentials._watchers == {}  # every stream let go of its watch


def store(
    creds: CredentialMap, namespace: str, name: str, doc: dict[str, str]
) -> GatewayCredential:
    cred = dataclasses.replace(
        credential_from_document(namespace, name, doc), revision=str(next(_revisions))
    )
    creds.put(cred)
    return cred


def served_cert(secret: secret_pb2.Secret) -> bytes:
    return secret.tls_certificate.certificate_chain.inline_bytes


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
