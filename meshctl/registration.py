"""Writing a workload into the Consul catalog, the one way meshctl does it."""

from __future__ import annotations

from typing import Any

import consul

__all__ = ["register"]


def register(host: str, port: int, body: dict[str, Any]) -> None:
    """PUT /v1/agent/service/register with a body from `api.catalog.registration_payload`."""
    consul.Consul(host=host, port=port).agent.service.register(
        body["Name"],
        service_id=body["ID"],
        address=body["Address"],
        port=body["Port"],
        tags=body["Tags"],
        meta=body["Meta"],
        check=body.get("Check"),
    )
