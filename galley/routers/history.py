"""Config history and rollback.

    GET  /v1/history/<kind>/<namespace>/<name>    -> the kept revisions, newest first
    POST /v1/rollback/<kind>/<namespace>/<name>   body (optional): {"to": REVISION,
                                                  "resourceVersion": "<as read>"}
(``/v1/history/<kind>/<name>`` and ``/v1/rollback/<kind>/<name>`` for a
cluster-scoped kind). `<kind>` is the kind id: `VirtualService`,
`HTTPRoute.gateway.networking.k8s.io` (case does not matter).

A rollback takes an old revision (by default the one before the current), checks
it again with today's validation, as apply does (an old version that no longer
validates is refused with 422 naming the fields), and writes it compare-and-set
against the version it read (409 if the resource changed meanwhile), recorded as
operation "rollback". Rolling back to a delete deletes.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.documents import BeyondBounds, DocumentError, parse_json, parse_yaml
from api.history import Revision, default_target
from api.resources import KindInfo, check_document, kinds, valid_name, valid_namespace
from api.store import ConfigStore, Conflict, NotFound, StoredResource, Write
from galley.dependencies import (
    StoreDep,
    off_loop,
    read_body,
    require_reader,
    require_writer,
    writer_name,
)
from galley.errors import ApiError, details
from galley.openapi import NAME_PATTERN, NAMESPACE_PATTERN, Problem, answers, enum, writer
from galley.routers.config import analysis

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["history"])


def _kind_param(cluster_scoped: bool) -> Any:
    ids = {k.id for k in kinds().values() if k.cluster_scoped == cluster_scoped}
    return Path(description="The kind id, e.g. VirtualService", json_schema_extra=enum(ids))


NamespacedKind = Annotated[str, _kind_param(False)]
ClusterKind = Annotated[str, _kind_param(True)]
Namespace = Annotated[str, Path(json_schema_extra={"pattern": NAMESPACE_PATTERN})]
Name = Annotated[str, Path(json_schema_extra={"pattern": NAME_PATTERN, "maxLength": 253})]


class RevisionOut(BaseModel):
    revision: int = Field(description="Counts up from 1 per resource; what --to names")
    resourceVersion: str = Field(description="The resourceVersion this write produced")
    replaced: str = Field(description="The resourceVersion it replaced ('0': none)")
    operation: str = Field(description="create, update, delete, rollback or baseline")
    at: str = Field(description="When, UTC (ISO 8601)")
    by: str = Field(description="The name of the token that wrote it ('' if unknown)")
    current: bool = Field(description="This revision is what is stored now")
    resource: dict[str, Any] | None = Field(description="The resource as stored; null: deleted")


class History(BaseModel):
    kind: str
    namespace: str = Field(description="'' for a cluster-scoped kind")
    name: str
    items: list[RevisionOut] = Field(description="Newest first")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int | None = Field(
        None,
        ge=1,
        strict=True,
        description="The revision to go back to (default: the one before the current)",
    )
    resourceVersion: str | None = Field(
        None,
        pattern=r"^[0-9]+$",
        description="Roll back only if the resource is still at this version ('0': absent)",
    )


class RollbackResult(BaseModel):
    resource: str = Field(description="KIND/NAMESPACE/NAME")
    action: str = Field(description="rolled back, deleted or unchanged")
    to: int = Field(description="The revision rolled back to")
    revision: int | None = Field(description="The revision this rollback recorded")
    resourceVersion: str = Field(description="The version now stored ('' when deleted)")
    warnings: list[Problem]


def _body_schema() -> dict[str, Any]:
    yaml = {"schema": {"type": "string", "description": "The same object, as YAML"}}
    return {
        "requestBody": {
            "required": False,
            "description": "Which revision; none: the one before the current",
            "content": {
                "application/json": {"schema": RollbackRequest.model_json_schema()},
                "application/yaml": yaml,
            },
        }
    }


def _kind(kind: str, cluster_scoped: bool) -> KindInfo:
    found = next((k for k in kinds().values() if k.id.lower() == kind.lower()), None)
    if found is None:
        known = ", ".join(sorted(k.id for k in kinds().values()))
        raise ApiError(404, "NotFound", f"unknown kind {kind!r} (one of {known})")
    if found.cluster_scoped and not cluster_scoped:
        raise ApiError(404, "NotFound", f"{found.id} is cluster-scoped: name no namespace")
    if cluster_scoped and not found.cluster_scoped:
        raise ApiError(404, "NotFound", f"{found.id} lives in a namespace: name one")
    return found


def _where(namespace: str, name: str) -> None:
    if namespace and not valid_namespace(namespace):
        raise ApiError(400, "BadRequest", f"namespace {namespace!r} is not a DNS-1123 label")
    if not valid_name(name):
        raise ApiError(400, "BadRequest", f"name {name!r} is not a lower-case DNS-1123 name")


def _ref(info: KindInfo, namespace: str, name: str) -> str:
    return f"{info.id}/{namespace}/{name}" if namespace else f"{info.id}/{name}"


async def _current(s: ConfigStore, info: KindInfo, namespace: str, name: str) -> int | None:
    try:
        return (await s.get(info.id, namespace, name)).version
    except NotFound:
        return None


def _out(r: Revision, current: Revision | None) -> dict[str, Any]:
    return {
        "revision": r.revision,
        "resourceVersion": str(r.resource_version),
        "replaced": str(r.replaced),
        "operation": r.operation,
        "at": r.at,
        "by": r.by,
        "current": r is current,
        "resource": r.document,
    }


def _current_revision(revisions: list[Revision], current: int | None) -> Revision | None:
    """The revision that is what is stored now (None: what is stored was not recorded)."""
    if not revisions:
        return None
    target = default_target(revisions, current)
    newest = revisions[0]
    return None if target is newest else newest


@router.get(
    "/history/{kind}/{namespace}/{name}",
    dependencies=[Depends(require_reader)],
    responses=answers(History, 200, 400, 401, 404),
)
async def history(kind: NamespacedKind, namespace: Namespace, name: Name, s: StoreDep) -> History:
    """The kept revisions of one resource, newest first."""
    _where(namespace, name)
    return await _history(s, _kind(kind, False), namespace, name)


@router.get(
    "/history/{kind}/{name}",
    dependencies=[Depends(require_reader)],
    responses=answers(History, 200, 400, 401, 404),
)
async def history_cluster_scoped(kind: ClusterKind, name: Name, s: StoreDep) -> History:
    """The kept revisions of one cluster-scoped resource, newest first."""
    _where("", name)
    return await _history(s, _kind(kind, True), "", name)


async def _history(s: ConfigStore, info: KindInfo, namespace: str, name: str) -> History:
    revisions = await s.history(info.id, namespace, name)
    current = await _current(s, info, namespace, name)
    if not revisions and current is None:
        raise ApiError(404, "NotFound", f"{_ref(info, namespace, name)}: no such resource")
    now = _current_revision(revisions, current)
    items = [RevisionOut.model_validate(_out(r, now)) for r in revisions]
    return History(kind=info.id, namespace=namespace, name=name, items=items)


@router.post(
    "/rollback/{kind}/{namespace}/{name}",
    dependencies=[Depends(require_writer)],
    responses=answers(RollbackResult, 200, 400, 401, 403, 404, 409, 413, 415, 422),
    openapi_extra=writer(_body_schema()),
)
async def rollback(
    request: Request, kind: NamespacedKind, namespace: Namespace, name: Name, s: StoreDep
) -> RollbackResult:
    """Write an earlier revision again (checked as apply checks it), compare-and-set."""
    _where(namespace, name)
    return await _rollback(request, s, _kind(kind, False), namespace, name)


@router.post(
    "/rollback/{kind}/{name}",
    dependencies=[Depends(require_writer)],
    responses=answers(RollbackResult, 200, 400, 401, 403, 404, 409, 413, 415, 422),
    openapi_extra=writer(_body_schema()),
)
async def rollback_cluster_scoped(
    request: Request, kind: ClusterKind, name: Name, s: StoreDep
) -> RollbackResult:
    """Write an earlier revision of a cluster-scoped resource again."""
    _where("", name)
    return await _rollback(request, s, _kind(kind, True), "", name)


async def _read_request(request: Request) -> RollbackRequest:
    """The optional body: JSON or YAML, an object or nothing."""
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    if not has_body and not request.headers.get("content-type"):
        return RollbackRequest.model_validate({})
    raw, kind = await read_body(request)
    try:
        text = raw.decode("utf-8")
        if not text.strip():
            doc: Any = None
        elif kind == "json":
            doc = parse_json(text)
        else:
            docs = parse_yaml(text)
            if len(docs) > 1:
                raise ApiError(400, "BadRequest", "body: expected one document")
            doc = docs[0] if docs else None
    except UnicodeDecodeError as err:
        raise ApiError(400, "BadRequest", f"body is not UTF-8: {err}") from err
    except (BeyondBounds, DocumentError) as err:
        raise ApiError(400, "BadRequest", f"body: {err}") from err
    try:
        return RollbackRequest.model_validate({} if doc is None else doc)
    except ValidationError as err:
        problems = [
            {"document": "request", "path": ".".join(map(str, e["loc"])), "message": e["msg"]}
            for e in err.errors()
        ]
        raise ApiError(400, "BadRequest", "invalid rollback request", problems) from None


async def _rollback(
    request: Request, s: ConfigStore, info: KindInfo, namespace: str, name: str
) -> RollbackResult:
    asked = await _read_request(request)
    ref = _ref(info, namespace, name)
    try:
        stored: StoredResource | None = await s.get(info.id, namespace, name)
    except NotFound:
        stored = None
    current = stored.version if stored else None
    if asked.resourceVersion is not None and asked.resourceVersion != str(current or 0):
        raise ApiError(
            409,
            "Conflict",
            f"{ref} is at version {current or 'none (absent)'}, not {asked.resourceVersion}: "
            "read it again",
        )
    revisions = await s.history(info.id, namespace, name)
    if not revisions:
        raise ApiError(404, "NotFound", f"{ref}: no history is recorded")
    if asked.to is None:
        target = default_target(revisions, current)
        if target is None:
            raise ApiError(404, "NotFound", f"{ref}: no earlier revision to roll back to")
    else:
        target = next((r for r in revisions if r.revision == asked.to), None)
        if target is None:
            kept = ", ".join(str(r.revision) for r in reversed(revisions))
            raise ApiError(
                404, "NotFound", f"{ref}: no revision {asked.to} (the kept ones: {kept})"
            )
    by = writer_name(request)
    if target.document is None:
        return await _roll_back_to_delete(request, s, info, namespace, name, target, current, by)
    where = f"{ref}@{target.revision}"
    checked = await off_loop(
        request, check_document, target.document, where, namespace or "default"
    )
    res = checked.resource
    if res is None or checked.errors:
        raise ApiError(
            422,
            "Invalid",
            f"revision {target.revision} of {ref} no longer validates; nothing was stored",
            details(where, checked.errors),
            details(where, checked.warnings),
        )
    if res.key != (info.id, namespace, name):
        raise ApiError(422, "Invalid", f"revision {target.revision} holds {res.ref}, not {ref}")
    warnings = details(where, checked.warnings) + await analysis(request, s, [res])
    if stored is not None and stored.resource.canonical_json() == res.canonical_json():
        return RollbackResult(
            resource=ref,
            action="unchanged",
            to=target.revision,
            revision=None,
            resourceVersion=str(current),
            warnings=[Problem.model_validate(w) for w in warnings],
        )
    try:
        (written,) = await s.write([Write(res, current, "rollback")], by=by)
    except Conflict as err:
        raise ApiError(409, "Conflict", f"{ref} changed meanwhile; nothing was stored") from err
    request.app.state.metrics.writes.labels("rollback").inc()
    log.info("%s rolled back to revision %d by %s", ref, target.revision, by)
    return RollbackResult(
        resource=ref,
        action="rolled back",
        to=target.revision,
        revision=written.revision,
        resourceVersion=str(written.version),
        warnings=[Problem.model_validate(w) for w in warnings],
    )


async def _roll_back_to_delete(
    request: Request,
    s: ConfigStore,
    info: KindInfo,
    namespace: str,
    name: str,
    target: Revision,
    current: int | None,
    by: str,
) -> RollbackResult:
    ref = _ref(info, namespace, name)
    if current is None:
        return RollbackResult(
            resource=ref,
            action="unchanged",
            to=target.revision,
            revision=None,
            resourceVersion="",
            warnings=[],
        )
    try:
        revision = await s.delete(info.id, namespace, name, current, by=by, operation="rollback")
    except (Conflict, NotFound) as err:
        raise ApiError(409, "Conflict", f"{ref} changed meanwhile; nothing was stored") from err
    request.app.state.metrics.writes.labels("rollback").inc()
    log.info("%s rolled back to revision %d (a delete) by %s", ref, target.revision, by)
    return RollbackResult(
        resource=ref,
        action="deleted",
        to=target.revision,
        revision=revision,
        resourceVersion="",
        warnings=[],
    )
