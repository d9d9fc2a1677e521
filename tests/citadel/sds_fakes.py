"""An SDS server driven through a fake gRPC context (no network), for the SDS tests:
the server with in-memory credentials and grants, streams that send requests and
read responses, and helpers to store credentials and grants."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from api.resources import GATEWAY_API, Resource, check_document
from citadel.ca import CertificateAuthority
from citadel.credentials import CredentialMap, GatewayCredential, credential_from_document
from citadel.grants import GrantMap
from citadel.identity_cache import IdentityCache
from citadel.metrics import CitadelMetrics
from citadel.sds import SECRET_TYPE, SdsServer
from citadel.tokens import TokenSigner

__all__ = [
    "Aborted",
    "Citadel",
    "FakeContext",
    "OpenStream",
    "Stream",
    "grant",
    "open_streams",
    "sds_citadel",
    "secrets",
    "served_cert",
    "store",
]

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
    grants: GrantMap


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


OpenStream = Callable[..., Stream]  # (namespace="shop", sa="gw", gateway=True) -> Stream


def sds_citadel(tmp_path: Path) -> Citadel:
    """An SDS server with empty credentials and grants (read: none in force)."""
    ca = CertificateAuthority.load_or_create(tmp_path, "cluster.local")
    metrics = CitadelMetrics()
    cache = IdentityCache(ca, datetime.timedelta(hours=1), metrics)
    signer = TokenSigner.load_or_create(tmp_path / "token-key.pem")
    credentials = CredentialMap()
    grants = GrantMap()
    grants.replace([])
    return Citadel(
        SdsServer(cache, signer, metrics, credentials, grants),
        signer,
        credentials,
        metrics,
        ca,
        cache,
        grants,
    )


async def open_streams(citadel: Citadel) -> AsyncIterator[OpenStream]:
    """Open streams (namespace, sa, gateway role); every one is ended at the end, and each
    must have let go of every watch it held."""
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
    assert citadel.credentials._watchers == {}
    assert citadel.grants._watchers == set()


def secrets(resp: discovery_pb2.DiscoveryResponse) -> dict[str, secret_pb2.Secret]:
    out = {}
    for packed in resp.resources:
        secret = secret_pb2.Secret()
        assert packed.Unpack(secret)
        out[secret.name] = secret
    return out


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


def grant(
    namespace: str,
    from_namespace: str,
    secret: str | None = None,
    *,
    name: str = "gateways",
    from_kind: str = "Gateway",
) -> Resource:
    """A ReferenceGrant in `namespace` for kind `from_kind` of `from_namespace` to Secrets
    (`secret` only, or any), validated as Galley validates it."""
    to: dict[str, str] = {"group": "", "kind": "Secret"}
    if secret is not None:
        to["name"] = secret
    doc = {
        "apiVersion": f"{GATEWAY_API}/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "from": [{"group": GATEWAY_API, "kind": from_kind, "namespace": from_namespace}],
            "to": [to],
        },
    }
    checked = check_document(doc, "test")
    assert checked.resource is not None and not checked.errors, checked.issues
    return checked.resource
