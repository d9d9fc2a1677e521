"""Pilot's settings: one object, from flags or PILOT_* environment variables."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PilotSettings", "split_addr"]


def split_addr(value: str) -> tuple[str, int]:
    """'host:port' -> (host, port), with a clear error for anything else."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class PilotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PILOT_", extra="forbid")

    consul_addr: str = Field("127.0.0.1:8500", description="Consul agent HTTP address, HOST:PORT")
    grpc_addr: str = Field("127.0.0.1:15010", description="Plaintext xDS (ADS) listen address")
    tls_grpc_addr: str | None = Field(
        None, description="xDS over TLS listen address (needs tls_cert_file and tls_key_file)"
    )
    tls_cert_file: str | None = Field(
        None, description="Pilot's cert chain (e.g. from meshctl cert)"
    )
    tls_key_file: str | None = Field(None, description="Pilot's private key")
    http_addr: str = Field(
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
    consul_wait: str = Field("55s", description="Blocking-query wait time sent to Consul")
    log_level: str = Field("INFO", description="Python logging level")

    @field_validator("consul_addr", "grpc_addr", "http_addr")
    @classmethod
    def _is_addr(cls, value: str) -> str:
        split_addr(value)
        return value
