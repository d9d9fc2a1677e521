"""Citadel's settings: one object, from flags or CITADEL_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.addrs import HostPort, HostPorts

__all__ = ["CitadelSettings"]


class CitadelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITADEL_", extra="forbid")

    state_dir: str = Field(
        ".mesh/citadel",
        description="Where the root CA, the token key and the credentials key are kept",
    )
    plugged_ca_dir: str | None = Field(
        None, description="Use this CA (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem)"
    )
    trust_domain: str = Field("cluster.local", description="SPIFFE trust domain")
    workload_ttl_seconds: int = Field(86_400, ge=2, description="Workload certificate lifetime")
    sds_addr: HostPort = Field(
        "127.0.0.1:15012", description="SDS (and CSR API) gRPC listen address"
    )
    sds_tls_addr: HostPort | None = Field(
        "127.0.0.1:15013",
        description="SDS over TLS (cert from this CA); Envoy's token-file credentials need it",
    )
    control_plane_namespace: str = Field(
        "mesh-system", description="Namespace of Citadel's own identity"
    )
    http_addr: HostPort = Field(
        "127.0.0.1:15016", description="HTTP: /metrics, /healthz, /v1/tokens"
    )
    consul_addr: HostPorts | None = Field(
        None,
        description=(
            "Consul HTTP address(es) holding gateway credentials (KV mesh/secrets/, sealed) "
            "and Galley's ReferenceGrants (mesh/config/, read only); without it gateway "
            "credentials are off"
        ),
    )
    admin_token: SecretStr | None = Field(None, description="Credential that may mint tokens")
    admin_token_file: str | None = Field(None, description="Read the admin credential from a file")
    viewer_token: SecretStr | None = Field(
        None,
        description="Credential that may only list the issued certificates (Galley's dashboard);"
        " the admin credential may too",
    )
    viewer_token_file: str | None = Field(
        None, description="Read the viewer credential from a file"
    )
    log_level: str = Field("INFO", description="Python logging level")

    def viewer_credential(self) -> str | None:
        if self.viewer_token_file:
            with open(self.viewer_token_file) as f:
                return f.read().strip() or None
        return self.viewer_token.get_secret_value() if self.viewer_token else None

    def admin_credential(self) -> str | None:
        if self.admin_token_file:
            with open(self.admin_token_file) as f:
                return f.read().strip() or None
        return self.admin_token.get_secret_value() if self.admin_token else None
