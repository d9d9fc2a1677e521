"""Plan before apply: what a change would do to the proxies, and whether Envoy takes it.

    POST /v1/plan?namespace=NS[&proxy=ID]   body: as /v1/apply   -> 200 with the plan

The body is validated exactly as apply validates it (errors are 422, nothing is asked
of Pilot), then every Pilot replica is asked for its plan (galley/pilots.py) and the
answers merged: per group of proxies with the same change, the xDS resources added,
removed and changed with a diff of their JSON, and Envoy's verdict on the planned
config. Nothing is stored. It needs the writer's token, as apply does: a plan is a
step of writing, and costs every Pilot a translation and Envoy runs.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from galley.dependencies import StoreDep, require_writer
from galley.errors import ApiError
from galley.openapi import Problem, answers, documents_body, writer
from galley.pilots import check_warnings, plan
from galley.routers.config import NamespaceQuery, check_all

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["config"])


class EnvoyVerdict(BaseModel):
    checked: bool = Field(
        description="Envoy was asked (false: no Pilot, or no Envoy, or no change)"
    )
    accepted: bool = Field(description="false: Envoy refuses the planned config")
    error: str = Field(description="Envoy's own error, or why it was not asked")


class TypeChanges(BaseModel):
    added: list[str]
    removed: list[str]
    changed: list[str]


class PlanGroup(BaseModel):
    key: str = Field(description="Identifies the change: equal keys, the same change")
    kind: str = Field(description="sidecar or gateway")
    service: str
    namespace: str
    count: int = Field(description="How many connected proxies get this change")
    proxies: list[str] = Field(description="Some of their node ids")
    changes: dict[str, TypeChanges] = Field(description="Per xDS type (cds eds lds rds ecds)")
    diff: str = Field(description="A unified diff of the resources' JSON")
    envoy: EnvoyVerdict


class Pilots(BaseModel):
    answered: list[str]
    unreachable: list[str]


class PlanResult(BaseModel):
    resources: list[str] = Field(description="KIND/NAMESPACE/NAME of each document")
    pilots: Pilots
    proxies: int = Field(description="Connected proxies considered")
    unchanged: int = Field(description="Of those, how many the change leaves as they are")
    groups: list[PlanGroup]
    warnings: list[Problem]
    envoy: EnvoyVerdict


ProxyQuery = Query(None, description="Only this proxy (its node id)", max_length=253)


@router.post(
    "/plan",
    # A writer's step (it costs every Pilot a plan and Envoy runs), so a writer's token.
    dependencies=[Depends(require_writer)],
    responses=answers(PlanResult, 200, 400, 401, 403, 404, 413, 415, 422),
    openapi_extra=writer(documents_body()),
)
async def plan_change(
    request: Request,
    s: StoreDep,
    namespace: str = NamespaceQuery,
    proxy: str | None = ProxyQuery,
) -> dict[str, Any]:
    checked, warnings = await check_all(request, s, namespace)
    resources = [c.resource for c in checked if c.resource is not None]
    found = await plan(request.app.state.settings.pilot_http_addr, resources, proxy)
    if proxy is not None and not found.answered and found.not_found:
        raise ApiError(404, "NotFound", f"no Pilot serves a proxy {proxy!r}")
    return {
        "resources": [r.ref for r in resources],
        **found.to_dict(),
        "warnings": warnings + check_warnings(found),
    }
