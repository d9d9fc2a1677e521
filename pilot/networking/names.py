"""Envoy resource names, in one place so that every builder agrees."""

from __future__ import annotations

from pilot.model import ServiceKey

__all__ = [
    "inbound_cluster",
    "inbound_listener",
    "outbound_cluster",
    "outbound_listener",
    "outbound_route",
]


def outbound_cluster(key: ServiceKey, port: int, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{key.hostname}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def outbound_listener(address: str, port: int) -> str:
    return f"outbound_{address}_{port}"


def inbound_listener(address: str, port: int) -> str:
    return f"inbound_{address}_{port}"


def outbound_route(namespace: str) -> str:
    """One outbound route table per namespace: short names resolve within it."""
    return f"outbound|http|{namespace}"
