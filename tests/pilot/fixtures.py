"""Small, hand-made meshes for unit and golden tests."""

from __future__ import annotations

from api.catalog import Instance
from pilot.model import MeshSnapshot, Proxy


def instance(
    service: str,
    n: int,
    namespace: str = "default",
    version: str = "v1",
    port: int = 9080,
    locality: str = "",
    protocol: str = "http",
) -> Instance:
    return Instance(
        id=f"{service}-{n}",
        service=service,
        namespace=namespace,
        address=f"10.0.0.{n}",
        port=15006,
        service_port=port,
        labels={"version": version},
        locality=locality,
        protocol=protocol,
    )


def snapshot(version: int = 1) -> MeshSnapshot:
    return MeshSnapshot.build(
        version,
        {
            "reviews": (instance("reviews", 1), instance("reviews", 2, version="v2")),
            "ratings": (instance("ratings", 3, namespace="backend"),),
        },
    )


def sidecar(namespace: str = "default") -> Proxy:
    return Proxy(
        id="productpage-1",
        service="productpage",
        namespace=namespace,
        labels={"version": "v1"},
        outbound_port=15001,
        inbound_port=15006,
        app_port=9080,
    )
