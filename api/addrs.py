"""HOST:PORT addresses as the services and meshctl take them: one, or a comma-separated list."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

__all__ = ["HostPort", "HostPorts", "parse_addrs", "split_addr"]


def split_addr(value: str) -> tuple[str, int]:
    """'host:port' -> (host, port), with a clear error for anything else ([v6]:port too)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value.strip()!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def parse_addrs(value: str) -> list[tuple[str, int]]:
    """'h1:8500,h2:8500' -> [('h1', 8500), ('h2', 8500)]; ValueError names the bad entry."""
    out = [split_addr(entry) for entry in value.split(",")]
    if len(set(out)) != len(out):
        raise ValueError(f"{value!r} names an address twice")
    return out


def _host_port(value: str) -> str:
    split_addr(value)
    return value


def _host_ports(value: str) -> str:
    parse_addrs(value)
    return value


# Settings field types: the value stays the text the user gave, checked once here.
HostPort = Annotated[str, AfterValidator(_host_port)]
HostPorts = Annotated[str, AfterValidator(_host_ports)]
