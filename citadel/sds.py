"""SDS over grpc.aio: ``default`` (the workload's cert and key), ``ROOTCA``, and for a
gateway's token its namespace's gateway credentials (``kubernetes://NAME``, see
`citadel.gateway_secrets`), pushed when they are created, changed or deleted; and
another namespace's (``kubernetes-gateway://NS/NAME``) while a ReferenceGrant there
allows it (`citadel.grants`), re-evaluated whenever the grants change. One that is not
allowed is left out of the answer, as Istio's SDS does, never sent.

The caller proves its identity with a workload token in the stream's
metadata (``authorization: Bearer <token>``); Envoy's node metadata is only
a claim, and one that disagrees with the token is refused. Certificates are
cached per identity (`citadel.identity_cache`: reconnects get the same one) and
rotated at about half their lifetime, with jitter, pushed over the open streams.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
from collections.abc import Iterable
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import DecodeError

from api import xds_ack as ack
from citadel.ca import IssuedCert
from citadel.credentials import CredentialMap, CredentialSource
from citadel.gateway_secrets import ABSENT, DENIED, parse_name, resolve
from citadel.grants import GrantMap, GrantSource
from citadel.identity_cache import IdentityCache
from citadel.metrics import CitadelMetrics
from citadel.tokens import Claims, TokenError, TokenSigner

__all__ = ["ROOT_SECRET", "SECRET_TYPE", "WORKLOAD_SECRET", "SdsServer"]

log = logging.getLogger(__name__)

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"
SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"


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


class _Follows:
    """What wakes a gateway's stream besides its certificate: the credentials of its own
    namespace and of the namespaces its ``kubernetes-gateway://`` names are in, and the
    ReferenceGrants. A stream of another token (`gateway` None) follows none of them."""

    def __init__(
        self,
        credentials: CredentialSource,
        grants: GrantSource,
        wake: asyncio.Event,
        gateway: str | None,
    ) -> None:
        self._credentials, self._grants, self._wake = credentials, grants, wake
        self._gateway = gateway
        self._namespaces: set[str] = set()
        if gateway is not None:
            self._grants.watch(wake)
            self.names(())

    def names(self, names: Iterable[str]) -> None:
        """Follow the namespaces of exactly these names (and the gateway's own)."""
        if self._gateway is None:
            return
        wanted = {self._gateway}
        for name in names:
            ref = parse_name(name)
            if ref is not None and ref.namespace is not None:
                wanted.add(ref.namespace)
        for namespace in wanted - self._namespaces:
            self._credentials.watch(namespace, self._wake)
        for namespace in self._namespaces - wanted:
            self._credentials.unwatch(namespace, self._wake)
        self._namespaces = wanted

    def close(self) -> None:
        for namespace in self._namespaces:
            self._credentials.unwatch(namespace, self._wake)
        self._namespaces = set()
        self._grants.unwatch(self._wake)


class SdsServer:
    def __init__(
        self,
        cache: IdentityCache,
        signer: TokenSigner,
        metrics: CitadelMetrics,
        credentials: CredentialSource | None = None,
        grants: GrantSource | None = None,
    ) -> None:
        self._cache = cache
        self._signer = signer
        self._metrics = metrics
        # Without a credential source (no Consul) every gateway credential is absent, and
        # without grants none of another namespace is allowed.
        self._credentials: CredentialSource = (
            CredentialMap() if credentials is None else credentials
        )
        self._grants: GrantSource = GrantMap() if grants is None else grants
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
            got = resolve(ref, ns, self._credentials, self._grants)
            digest.update(f"\0{name}={got.source}".encode())
            if sources.get(name) != got.source:
                sources[name] = got.source
                if got.source == DENIED:
                    log.warning(
                        "%s/%s asked for %s: no ReferenceGrant in namespace %s allows "
                        "Gateways of namespace %s to use it; it is sent once one does",
                        ns,
                        sa,
                        name,
                        ref.namespace,
                        ns,
                    )
                elif got.source == ABSENT:
                    log.info(
                        "%s/%s asked for %s: no credential for it in namespace %s (yet); "
                        "it is sent when created",
                        ns,
                        sa,
                        name,
                        ref.namespace or ns,
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
        follows = _Follows(self._credentials, self._grants, wake, ns if claims.gateway else None)
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
                follows.names(req.resource_names)
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
            follows.close()
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
