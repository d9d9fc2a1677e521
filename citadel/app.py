"""Citadel wired together: CA + token signer -> SDS over gRPC, HTTP for tokens and metrics;
with Consul, gateway credentials (sealed in KV, watched into memory, served over SDS) and
the ReferenceGrants that let a gateway use another namespace's (Galley's config, watched)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path

import grpc

from citadel.ca import CertificateAuthority
from citadel.credential_store import CredentialStore
from citadel.credentials import CredentialMap
from citadel.csr import CertificateService
from citadel.grants import GrantMap, GrantWatch
from citadel.http import CitadelHttp
from citadel.identity_cache import IdentityCache
from citadel.metrics import CitadelMetrics
from citadel.sds import SdsServer
from citadel.sealing import KEY_FILE, Sealer
from citadel.settings import CitadelSettings
from citadel.tokens import TokenSigner

__all__ = ["Citadel"]

log = logging.getLogger(__name__)


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class Citadel:
    def __init__(self, settings: CitadelSettings) -> None:
        self.settings = settings
        state = Path(settings.state_dir)
        if settings.plugged_ca_dir:
            self.ca = CertificateAuthority.plugged_in(
                Path(settings.plugged_ca_dir), settings.trust_domain
            )
        else:
            self.ca = CertificateAuthority.load_or_create(state, settings.trust_domain)
        self.signer = TokenSigner.load_or_create(state / "token-key.pem")
        self.metrics = CitadelMetrics()
        self.cache = IdentityCache(
            self.ca, datetime.timedelta(seconds=settings.workload_ttl_seconds), self.metrics
        )
        self.credentials = CredentialMap()
        self.grants = GrantMap()
        self.store: CredentialStore | None = None
        self.grant_watch: GrantWatch | None = None
        if settings.consul_addr:
            self.store = CredentialStore(
                settings.consul_addr,
                Sealer.load_or_create(state / KEY_FILE),
                self.credentials,
                self.metrics,
            )
            self.grant_watch = GrantWatch(settings.consul_addr, self.grants, self.metrics)
        self.sds = SdsServer(self.cache, self.signer, self.metrics, self.credentials, self.grants)
        self.grpc_port = 0
        self.tls_port = 0
        self.http_port = 0

    def _server_credentials(self, host: str) -> grpc.ServerCredentials:
        """Citadel's own serving cert, from its own CA, reissued at every start."""
        ips = [ip for ip in {"127.0.0.1", host} if ip.replace(".", "").isdigit()]
        cert = self.ca.issue_server(
            self.settings.control_plane_namespace,
            "citadel",
            ["citadel", "localhost"],
            ips,
            datetime.timedelta(days=30),
        )
        return grpc.ssl_server_credentials([(cert.key_pem, cert.cert_chain_pem)])

    async def run(self, started: asyncio.Event | None = None) -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((self.sds.rpc_handlers(),))
        csr = CertificateService(
            self.ca,
            self.signer,
            self.metrics,
            datetime.timedelta(seconds=self.settings.workload_ttl_seconds),
        )
        server.add_generic_rpc_handlers((csr.rpc_handlers(),))
        host, port = _split(self.settings.sds_addr)
        self.grpc_port = server.add_insecure_port(f"{host}:{port}")
        if self.grpc_port == 0:
            raise OSError(f"cannot listen for SDS on {self.settings.sds_addr}")
        if self.settings.sds_tls_addr:
            tls_host, tls_port = _split(self.settings.sds_tls_addr)
            self.tls_port = server.add_secure_port(
                f"{tls_host}:{tls_port}", self._server_credentials(tls_host)
            )
            if self.tls_port == 0:
                raise OSError(f"cannot listen for SDS over TLS on {self.settings.sds_tls_addr}")
        http = CitadelHttp(
            self.ca,
            self.signer,
            self.metrics,
            self.settings.admin_credential,
            self.store,
            viewer_credential=self.settings.viewer_credential,
        )
        await server.start()
        try:
            self.http_port = await http.start(*_split(self.settings.http_addr))
            log.info(
                "citadel (trust domain %s) serving SDS on %s:%d, HTTP on %d; gateway "
                "credentials %s",
                self.ca.trust_domain,
                host,
                self.grpc_port,
                self.http_port,
                f"from consul {self.settings.consul_addr}" if self.store else "off (no consul)",
            )
            if started is not None:
                started.set()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.cache.run())
                if self.store is not None:
                    tasks.create_task(self.store.run())
                if self.grant_watch is not None:
                    tasks.create_task(self.grant_watch.run())
        finally:
            await http.stop()
            await server.stop(grace=1.0)
            if self.store is not None:
                await self.store.close()
            if self.grant_watch is not None:
                await self.grant_watch.close()
