"""The CSR-signing gRPC API (protos/citadel_ca.proto), for workloads without Envoy.

Requests arrive as raw bytes and are decoded here, after the caller's token
is checked: a message that cannot be decoded is one log line and
INVALID_ARGUMENT, never a traceback from the gRPC runtime.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from citadel.ca import CaError, CertificateAuthority
from citadel.metrics import CitadelMetrics
from citadel.sds import bearer_token
from citadel.tokens import TokenError, TokenSigner
from protos import citadel_ca_pb2

__all__ = ["CertificateService"]

log = logging.getLogger(__name__)


SERVICE = "meshpy.citadel.v1.CertificateService"


class CertificateService:
    def __init__(
        self,
        ca: CertificateAuthority,
        signer: TokenSigner,
        metrics: CitadelMetrics,
        max_ttl: datetime.timedelta,
    ) -> None:
        self._ca, self._signer, self._metrics, self._max_ttl = ca, signer, metrics, max_ttl

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(
            self.create_certificate,
            request_deserializer=None,
            response_serializer=citadel_ca_pb2.CreateCertificateResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, {"CreateCertificate": handler})

    async def create_certificate(
        self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> citadel_ca_pb2.CreateCertificateResponse:
        token = bearer_token(context)
        if token is None:
            self._metrics.auth_failures.labels("missing").inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "an identity token is required")
        try:
            claims = self._signer.verify(token or "")
        except TokenError as err:
            self._metrics.auth_failures.labels("invalid").inc()
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"identity token refused: {err}")
            raise
        try:
            request = citadel_ca_pb2.CreateCertificateRequest.FromString(raw)
        except DecodeError:
            log.warning("CreateCertificate from %s: not a CreateCertificateRequest", context.peer())
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the request is not a CreateCertificateRequest"
            )
            raise
        ttl = self._max_ttl
        if 0 < request.validity_seconds < ttl.total_seconds():
            ttl = datetime.timedelta(seconds=request.validity_seconds)
        try:
            issued = self._ca.sign_csr(
                request.csr.encode(), claims.namespace, claims.service_account, ttl
            )
        except CaError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise
        self._metrics.csr_signed.inc()
        chain = [
            f"-----BEGIN CERTIFICATE-----{part}"
            for part in issued.cert_chain_pem.decode().split("-----BEGIN CERTIFICATE-----")[1:]
        ]
        return citadel_ca_pb2.CreateCertificateResponse(
            cert_chain=chain,
            root_cert=self._ca.root_bundle_pem().decode(),
            identity=issued.identity,
        )
