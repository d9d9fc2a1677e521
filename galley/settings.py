"""Galley's settings: one object, from flags or GALLEY_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.addrs import HostPort, HostPorts

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
    log_level: str = Field("INFO", description="Python logging level")

    def write_token(self) -> str | None:
        if self.token_file:
            with open(self.token_file) as f:
                return f.read().strip() or None
        return self.token.get_secret_value() if self.token else None
