"""Galley's settings: one object, from flags or GALLEY_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GalleySettings"]


def _check_addr(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return value


class GalleySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GALLEY_", extra="forbid")

    consul_addr: str = Field("127.0.0.1:8500", description="Consul agent HTTP address, HOST:PORT")
    http_addr: str = Field("127.0.0.1:15080", description="REST API listen address")
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

    @field_validator("consul_addr", "http_addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        return _check_addr(value)

    def write_token(self) -> str | None:
        if self.token_file:
            with open(self.token_file) as f:
                return f.read().strip() or None
        return self.token.get_secret_value() if self.token else None
