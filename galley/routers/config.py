"""Multi-document endpoints: validate (dry run) and apply (all or nothing).

    POST /v1/validate   body: YAML stream or JSON      -> 200 with warnings, or 422
    POST /v1/apply      body: YAML stream or JSON      -> 200 with what changed, or 422/409

An apply with any invalid document stores nothing, nor does one whose planned Envoy
config the real Envoy refuses (see galley/pilots.py); a valid one is written in
one Consul transaction, so an apply that would change more than 64 resources
(Consul's limit for one transaction) is refused whole with 413.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from api.analyze import analyze
from api.resources import Checked, Resource, check_document
from api.store import ConfigStore, Conflict, NotFound, TooManyWrites, Write
from galley.dependencies import (
    StoreDep,
    off_loop,
    read_documents,
    require_reader,
    require_writer,
    writer_name,
)
from galley.errors import ApiError, issue_list
from galley.openapi import (
    NAMESPACE_PATTERN,
    ApplyResult,
    ValidateResult,
    answers,
    documents_body,
    writer,
)
from galley.pilots import envoy_gate

__all__ = ["NamespaceQuery", "analysis", "check_all", "router"]

router = APIRouter(prefix="/v1", tags=["config"])


NamespaceQuery = Query(
    "default",
    description="Namespace for documents that name none",
    json_schema_extra={"pattern": NAMESPACE_PATTERN},
)


async def check_all(
    request: Request, s: ConfigStore, namespace: str
) -> tuple[list[Checked], list[dict[str, str]]]:
    docs = await read_documents(request)
    checked = await off_loop(
        request, lambda: [check_document(doc, where, namespace) for where, doc in docs]
    )
    keys: dict[tuple[str, str, str], str] = {}
    for c in checked:
        if c.resource is not None:
            if c.resource.key in keys:
                raise ApiError(
                    422,
                    "Invalid",
                    f"{c.where}: {c.resource.ref} appears twice (first at {keys[c.resource.key]})",
                )
            keys[c.resource.key] = c.where
    if any(not c.ok for c in checked):
        raise ApiError(
            422,
            "Invalid",
            f"{sum(1 for c in checked if not c.ok)} of {len(checked)} "
            "documents are invalid; nothing was stored",
            issue_list(checked),
            issue_list(checked, "warning"),
        )
    warnings = issue_list(checked, "warning")
    warnings += await analysis(request, s, [c.resource for c in checked if c.resource])
    return checked, warnings


async def analysis(request: Request, s: ConfigStore, new: list[Resource]) -> list[dict[str, str]]:
    """Cross-resource warnings (as istioctl analyze) against what is stored and the catalog."""
    try:
        existing = [st.resource for st in await s.list_resources()]
    except Exception:  # analysis is advice; never fail a request for it
        existing = []
    services = set(await request.app.state.catalog_services())
    by_key = {r.key: r for r in existing}
    # A replaced resource keeps its age (Consul keeps the key's CreateIndex).
    by_key.update(
        {r.key: replace(r, created=by_key[r.key].created) if r.key in by_key else r for r in new}
    )
    found = analyze(list(by_key.values()), services)
    new_refs = {r.ref for r in new}
    return [
        {"document": ref, "path": i.path, "message": i.message}
        for ref, issues in found.items()
        if ref in new_refs
        for i in issues
    ]


@router.post(
    "/validate",
    dependencies=[Depends(require_reader)],
    responses=answers(ValidateResult, 200, 400, 401, 413, 415, 422),
    openapi_extra=documents_body(),
)
async def validate(
    request: Request, s: StoreDep, namespace: str = NamespaceQuery
) -> dict[str, Any]:
    checked, warnings = await check_all(request, s, namespace)
    return {
        "valid": True,
        "resources": [c.resource.ref for c in checked if c.resource],
        "warnings": warnings,
    }


@router.post(
    "/apply",
    dependencies=[Depends(require_writer)],
    responses=answers(ApplyResult, 200, 400, 401, 403, 409, 413, 415, 422),
    openapi_extra=writer(documents_body()),
)
async def apply(request: Request, s: StoreDep, namespace: str = NamespaceQuery) -> dict[str, Any]:
    checked, warnings = await check_all(request, s, namespace)
    results: list[dict[str, str]] = []
    writes: list[Write] = []
    for c in checked:
        res = c.resource
        assert res is not None  # check_all refused anything else
        try:
            current = await s.get(res.kind_id, res.namespace, res.name)
        except NotFound:
            current = None
        if res.resource_version is not None:
            expect = int(res.resource_version) if res.resource_version.isdigit() else -2
            if expect == -2:
                raise ApiError(
                    400, "BadRequest", f"{c.where}: metadata.resourceVersion must be a number"
                )
        else:
            expect = current.version if current else 0
        if current and current.resource.canonical_json() == res.canonical_json():
            results.append(
                {
                    "resource": res.ref,
                    "action": "unchanged",
                    "resourceVersion": str(current.version),
                }
            )
            continue
        writes.append(Write(res, expect if (current or expect) else None))
        results.append({"resource": res.ref, "action": "configured" if current else "created"})
    # Envoy's own check of what the changed resources would make of every proxy's config:
    # a refusal stores nothing (422); no Pilot answering lets the apply go on, with a warning.
    warnings += await envoy_gate(request, [w.resource for w in writes])
    if writes:
        try:
            stored = await s.write(writes, by=writer_name(request))
        except TooManyWrites as err:
            raise ApiError(413, "RequestEntityTooLarge", f"nothing was stored: {err}") from err
        except Conflict as err:
            raise ApiError(
                409, "Conflict", f"a resource changed while applying; nothing was stored: {err}"
            ) from err
        versions = {st.resource.ref: str(st.version) for st in stored}
        for r in results:
            r.setdefault("resourceVersion", versions.get(r["resource"], ""))
        request.app.state.metrics.writes.labels("apply").inc(len(writes))
    return {"results": results, "warnings": warnings}
