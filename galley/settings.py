"""Galley's settings: one object, from flags or GALLEY_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.addrs import HostPort, HostPorts
from galley.dashboard.targets import StatsTargets

__all__ = ["GalleySettings"]


class GalleySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GALLEY_", extra="forbid")

    consul_addr: HostPorts = Field(
        "127.0.0.1:8500",
        description="Consul HTTP address, HOST:PORT; several, comma-separated, fail over in turn",
    )
    http_addr: HostPort = Field("127.0.0.1:15080", description="REST API listen address")
    pilot_http_addr: HostPorts = Field(
        "127.0.0.1:15014",
        description="Pilot's HTTP address, HOST:PORT; with several replicas, all of them,"
        " comma-separated (each serves its own share of the proxies)",
    )
    token: SecretStr | None = Field(
        None, description="Bearer token required for writes (and for reads from non-loopback)"
    )
    token_file: str | None = Field(None, description="Read the token from this file instead")
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest request body accepted")
    max_parallel_checks: int = Field(
        2, gt=0, description="Bodies parsed and validated at once (each bounded in size)"
    )
    check_timeout_s: float = Field(
        10.0, gt=0, description="Longest a request waits for, or spends in, parse and validation"
    )
    history_size: int = Field(
        20,
        ge=1,
        le=1000,
        description="Revisions of each resource kept in the config history (older ones pruned)",
    )
    # The dashboard (/ui/): where it reads what it shows besides Consul and Pilot.
    citadel_http_addr: HostPort | None = Field(
        None,
        description="Citadel's HTTP address, HOST:PORT: the dashboard lists the certificates"
        " it issued (without it, the security page shows no expiry)",
    )
    citadel_token: SecretStr | None = Field(
        None,
        description="Citadel's viewer credential (or its admin one), to list the certificates"
        " it issued",
    )
    citadel_token_file: str | None = Field(
        None, description="Read Citadel's viewer credential from this file instead"
    )
    stats_targets: StatsTargets = Field(
        "",
        description="Proxies outside the catalog whose stats the dashboard reads (gateways):"
        " NAME=HOST:PORT of their /stats/prometheus, comma-separated; catalog instances"
        " name theirs in their meta (prometheus_port)",
    )
    trust_domain: str = Field("cluster.local", description="The mesh's SPIFFE trust domain")
    root_namespace: str = Field(
        "istio-system", description="The mesh's root namespace (mesh-wide policies live there)"
    )
    log_level: str = Field("INFO", description="Python logging level")

    def citadel_credential(self) -> str | None:
        if self.citadel_token_file:
            with open(self.citadel_token_file) as f:
                return f.read().strip() or None
        return self.citadel_token.get_secret_value() if self.citadel_token else None

    def write_token(self) -> str | None:
        if self.token_file:
            with open(self.token_file) as f:
                return f.read().strip() or None
        return self.token.get_secret_value() if self.token else None
