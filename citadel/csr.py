"""The CSR-signing gRPC API (protos/citadel_ca.proto), for workloads without Envoy."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import grpc

from citadel.ca import CaError, CertificateAuthority
from citadel.metrics import CitadelMetrics
from citadel.sds import bearer_token
from citadel.tokens import TokenError, TokenSigner
from protos import citadel_ca_pb2, citadel_ca_pb2_grpc

__all__ = ["CertificateService"]

log = logging.getLogger(__name__)


class CertificateService(citadel_ca_pb2_grpc.CertificateServiceServicer):
    def __init__(
        self,
        ca: CertificateAuthority,
        signer: TokenSigner,
        metrics: CitadelMetrics,
        max_ttl: datetime.timedelta,
    ) -> None:
        self._ca, self._signer, self._metrics, self._max_ttl = ca, signer, metrics, max_ttl

    async def CreateCertificate(
        self,
        request: citadel_ca_pb2.CreateCertificateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
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
