"""SDS over grpc.aio: ``default`` (the workload's cert and key), ``ROOTCA``, and for a
gateway's token its namespace's gateway credentials (``kubernetes://NAME``, see
`citadel.gateway_secrets`), pushed when they are created, changed or deleted.

The caller proves its identity with a workload token in the stream's
metadata (``authorization: Bearer <token>``); Envoy's node metadata is only
a claim, and one that disagrees with the token is refused. Certificates are
cached per identity (reconnects get the same one) and rotated at about half
their lifetime, with jitter, pushed over the open streams.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import DecodeError

from api import xds_ack as ack
from citadel.ca import CertificateAuthority, IssuedCert
from citadel.credentials import CredentialMap, CredentialSource
from citadel.gateway_secrets import parse_name, resolve
from citadel.metrics import CitadelMetrics
from citadel.tokens import Claims, TokenError, TokenSigner

__all__ = ["ROOT_SECRET", "SECRET_TYPE", "WORKLOAD_SECRET", "IdentityCache", "SdsServer"]

log = logging.getLogger(__name__)

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"
SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"


@dataclass(slots=True)
class _Entry:
    cert: IssuedCert
    rotate_at: float  # wall-clock seconds
    subscribers: set[asyncio.Event] = field(default_factory=set)


class IdentityCache:
    """One current certificate per identity, rotated before it expires."""

    def __init__(
        self,
        ca: CertificateAuthority,
        ttl: datetime.timedelta,
        metrics: CitadelMetrics,
        *,
        rotate_fraction: float = 0.5,
        jitter: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ca = ca
        self.ttl = ttl
        self._metrics = metrics
        self._fraction = rotate_fraction
        self._jitter = jitter
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._changed = asyncio.Event()

    def _rotate_at(self, cert: IssuedCert) -> float:
        start = cert.not_before.timestamp() + 60  # not_before is backdated a minute for skew
        life = cert.not_after.timestamp() - start
        share = self._fraction + random.uniform(-self._jitter, self._jitter)
        return start + life * max(0.05, min(0.95, share))

    def _issue(self, namespace: str, service_account: str) -> IssuedCert:
        cert = self.ca.issue(namespace, service_account, self.ttl)
        self._metrics.issued.inc()
        log.info(
            "issued %s (serial %x, valid until %s)",
            cert.identity,
            cert.serial,
            cert.not_after.isoformat(),
        )
        return cert

    def get(self, namespace: str, service_account: str) -> IssuedCert:
        key = (namespace, service_account)
        entry = self._entries.get(key)
        if entry is None or self._clock() >= entry.rotate_at:
            cert = self._issue(namespace, service_account)
            if entry is None:
                entry = self._entries[key] = _Entry(cert, self._rotate_at(cert))
            else:
                entry.cert, entry.rotate_at = cert, self._rotate_at(cert)
            self._changed.set()
        return entry.cert

    def subscribe(self, namespace: str, service_account: str) -> asyncio.Event:
        self.get(namespace, service_account)
        event = asyncio.Event()
        self._entries[(namespace, service_account)].subscribers.add(event)
        return event

    def unsubscribe(self, namespace: str, service_account: str, event: asyncio.Event) -> None:
        entry = self._entries.get((namespace, service_account))
        if entry is not None:
            entry.subscribers.discard(event)

    def rotate_due(self) -> int:
        """Rotate every identity whose time has come; wake its streams. Returns how many."""
        now, rotated = self._clock(), 0
        for (ns, sa), entry in self._entries.items():
            if now >= entry.rotate_at:
                entry.cert = self._issue(ns, sa)
                entry.rotate_at = self._rotate_at(entry.cert)
                self._metrics.rotations.inc()
                rotated += 1
                for event in entry.subscribers:
                    event.set()
        return rotated

    async def run(self) -> None:
        while True:
            self._changed.clear()
            self.rotate_due()
            upcoming = [e.rotate_at for e in self._entries.values()]
            wait = max(0.05, min(upcoming) - self._clock()) if upcoming else 3600.0
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(wait, 3600.0))
            except TimeoutError:
                pass


def _secret_any(secret: secret_pb2.Secret) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(secret)
    return packed


def workload_secret(cert: IssuedCert) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=WORKLOAD_SECRET,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=cert.cert_chain_pem),
            private_key=base_pb2.DataSource(inline_bytes=cert.key_pem),
        ),
    )


def root_secret(bundle: bytes) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=ROOT_SECRET,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=bundle)
        ),
    )


def bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class SdsServer:
    def __init__(
        self,
        cache: IdentityCache,
        signer: TokenSigner,
        metrics: CitadelMetrics,
        credentials: CredentialSource | None = None,
    ) -> None:
        self._cache = cache
        self._signer = signer
        self._metrics = metrics
        # Without a credential source (no Consul) every gateway credential is absent.
        self._credentials: CredentialSource = (
            CredentialMap() if credentials is None else credentials
        )
        self._nonces = itertools.count(1)
        self.streams = 0

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        stream: grpc.RpcMethodHandler[Any, Any] = grpc.stream_stream_rpc_method_handler(
            self._stream, request_deserializer=None, response_serializer=None
        )
        return grpc.method_handlers_generic_handler(SDS_SERVICE, {"StreamSecrets": stream})

    async def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Claims:
        token = bearer_token(context)
        if token is None:
            self._metrics.auth_failures.labels("missing").inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "an identity token is required")
        try:
            return self._signer.verify(token or "")
        except TokenError as err:
            self._metrics.auth_failures.labels("invalid").inc()
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"identity token refused: {err}")
            raise  # abort raises; this keeps type checkers honest

    def _contents(
        self, claims: Claims, names: frozenset[str], sources: dict[str, str]
    ) -> tuple[str, list[any_pb2.Any], list[str]]:
        """(version, resources, requested gateway credentials that are absent) for names.
        The version covers the workload cert, the roots and, only when asked for, each
        gateway credential's revision: streams without one keep the versions they had."""
        ns, sa = claims.namespace, claims.service_account
        cert = self._cache.get(ns, sa)
        resources = []
        if WORKLOAD_SECRET in names:
            resources.append(_secret_any(workload_secret(cert)))
        if ROOT_SECRET in names:
            resources.append(_secret_any(root_secret(self._cache.ca.root_bundle_pem())))
        digest = hashlib.blake2b(digest_size=8)
        digest.update(f"{cert.serial:x}".encode())
        digest.update(self._cache.ca.root_bundle_pem())
        missing = []
        for name in sorted(names):
            ref = parse_name(name)
            if ref is None:
                continue
            got = resolve(ref, ns, self._credentials)
            digest.update(f"\0{name}={got.source}".encode())
            if sources.get(name) != got.source:
                sources[name] = got.source
                if got.secret is None:
                    log.info(
                        "%s/%s asked for %s: no credential for it in namespace %s (yet); "
                        "it is sent when created",
                        ns,
                        sa,
                        name,
                        ns,
                    )
                else:
                    log.info("%s/%s: sending %s (from %s)", ns, sa, name, got.source)
            if got.secret is None:
                missing.append(name)
            else:
                resources.append(_secret_any(got.secret))
        return digest.hexdigest(), resources, missing

    async def _stream(self, _requests: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        claims = await self.authenticate(context)
        ns, sa = claims.namespace, claims.service_account
        wake = self._cache.subscribe(ns, sa)
        if claims.gateway:
            self._credentials.watch(ns, wake)
        watch: ack.Watch | None = None
        sources: dict[str, str] = {}  # gateway name -> what it was last resolved from
        lock = asyncio.Lock()
        self.streams += 1
        self._metrics.streams.set(self.streams)

        async def respond(names: frozenset[str], changed_only: bool = False) -> None:
            nonlocal watch
            assert watch is not None
            version, resources, missing = self._contents(claims, names, sources)
            if changed_only and version == watch.version_sent:
                return
            if missing and not resources:
                # Nothing there yet. An empty answer would be NACKed ("Missing SDS
                # resources"), and the NACK ends the listener's wait without a cert;
                # no answer keeps it waiting until the credential is created.
                return
            nonce = str(next(self._nonces))
            await context.write(
                discovery_pb2.DiscoveryResponse(
                    version_info=version,
                    resources=resources,
                    type_url=SECRET_TYPE,
                    nonce=nonce,
                ).SerializeToString()
            )
            watch = dataclasses.replace(watch, nonce_sent=nonce, version_sent=version)
            self._metrics.pushes.inc()

        async def pusher() -> None:
            while True:
                await wake.wait()
                wake.clear()
                async with lock:
                    if watch is not None and watch.names:
                        await respond(watch.names, changed_only=True)

        push_task = asyncio.create_task(pusher())
        try:
            while True:
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    return
                try:
                    req = discovery_pb2.DiscoveryRequest.FromString(raw)
                except DecodeError:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "malformed DiscoveryRequest"
                    )
                    return
                if watch is None:
                    await self._check_claims(req, claims, context)
                if req.type_url != SECRET_TYPE:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"this is SDS: type {req.type_url!r} is not served",
                    )
                await self._check_names(req.resource_names, claims, context)
                decision = ack.decide(
                    watch,
                    ack.Request(
                        type_url=SECRET_TYPE,
                        names=frozenset(req.resource_names),
                        version_info=req.version_info,
                        response_nonce=req.response_nonce,
                        error_detail=req.error_detail.message
                        if req.HasField("error_detail")
                        else None,
                    ),
                )
                async with lock:
                    watch = decision.watch
                    if decision.reason is ack.Reason.NACK:
                        self._metrics.nacks.inc()
                        log.warning(
                            "%s/%s NACKed its secrets: %s", ns, sa, req.error_detail.message
                        )
                    elif decision.respond:
                        await respond(watch.names)
        finally:
            push_task.cancel()
            self._cache.unsubscribe(ns, sa, wake)
            self._credentials.unwatch(ns, wake)
            self.streams -= 1
            self._metrics.streams.set(self.streams)

    async def _check_names(
        self,
        names: Iterable[str],
        claims: Claims,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Unknown names are NOT_FOUND; gateway credentials only for a gateway's token."""
        gateway = sorted(n for n in set(names) if parse_name(n) is not None)
        unknown = set(names) - {WORKLOAD_SECRET, ROOT_SECRET} - set(gateway)
        if unknown:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no such secret(s): {', '.join(sorted(unknown))}",
            )
        if gateway and not claims.gateway:
            self._metrics.auth_failures.labels("not_gateway").inc()
            message = (
                f"{claims.namespace}/{claims.service_account} asked for {', '.join(gateway)}: "
                "gateway credentials are served only to a token with the gateway role "
                "(meshctl token --gateway)"
            )
            log.warning("refused: %s", message)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    async def _check_claims(
        self,
        req: discovery_pb2.DiscoveryRequest,
        claims: Claims,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Node metadata may repeat the identity, never change it."""
        meta = json_format.MessageToDict(req.node.metadata) if req.node.HasField("metadata") else {}
        claimed_ns = meta.get("NAMESPACE", claims.namespace)
        claimed_sa = meta.get("SERVICE_ACCOUNT", claims.service_account)
        if (claimed_ns, claimed_sa) != (claims.namespace, claims.service_account):
            self._metrics.auth_failures.labels("mismatch").inc()
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token is for {claims.namespace}/{claims.service_account}, "
                f"node claims {claimed_ns}/{claimed_sa}",
            )
