"""Pilot's settings: one object, from flags or PILOT_* environment variables."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.addrs import HostPort, HostPorts
from api.mesh_config import ExtensionProvider, MeshConfig, load_mesh_config

__all__ = ["PilotSettings"]


class PilotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PILOT_", extra="forbid")

    consul_addr: HostPorts = Field(
        "127.0.0.1:8500",
        description="Consul HTTP address, HOST:PORT; several, comma-separated, fail over in turn",
    )
    grpc_addr: HostPort = Field("127.0.0.1:15010", description="Plaintext xDS (ADS) listen address")
    tls_grpc_addr: HostPort | None = Field(
        None, description="xDS over TLS listen address (needs tls_cert_file and tls_key_file)"
    )
    tls_cert_file: str | None = Field(
        None, description="Pilot's cert chain (e.g. from meshctl cert)"
    )
    tls_key_file: str | None = Field(None, description="Pilot's private key")
    http_addr: HostPort = Field(
        "127.0.0.1:15014", description="HTTP listen address for /metrics, /healthz, /debug/*"
    )
    debounce_quiet: float = Field(
        0.1, ge=0, description="Seconds a burst of changes must be quiet before a push"
    )
    debounce_max: float = Field(
        1.0, gt=0, description="Longest a change waits for a push, however busy the catalog"
    )
    trust_domain: str = Field("cluster.local", description="SPIFFE trust domain of the mesh")
    root_namespace: str = Field(
        "istio-system", description="Namespace whose policies apply mesh-wide"
    )
    access_log_file: str = Field(
        "", description="Sidecar access logs go here by default ('' = off unless Telemetry asks)"
    )
    access_log_format: str = Field(
        "json", description="Access log format: json, text, or an Envoy format string"
    )
    zipkin_addr: str = Field("", description="Zipkin collector HOST:PORT for traces ('' = none)")
    trace_sampling: float = Field(1.0, ge=0, le=100, description="Default trace sampling, percent")
    mesh_config: str | None = Field(
        None,
        description="Istio MeshConfig file (YAML): extensionProviders for CUSTOM authorization",
    )
    consul_wait: str = Field("55s", description="Blocking-query wait time sent to Consul")
    log_level: str = Field("INFO", description="Python logging level")

    @field_validator("mesh_config")
    @classmethod
    def _mesh_config_loads(cls, value: str | None) -> str | None:
        if value is not None:
            read_mesh_config(value)
        return value

    def extension_providers(self) -> tuple[ExtensionProvider, ...]:
        if self.mesh_config is None:
            return ()
        return tuple(read_mesh_config(self.mesh_config).extension_providers or ())


def read_mesh_config(path: str) -> MeshConfig:
    """The mesh config file, validated (MeshConfigError or OSError say what is wrong)."""
    with open(path) as f:
        return load_mesh_config(f.read(), path)
