"""Kubernetes-style CRUD: /apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>], and
/apis/<group>/<version>/<plural>[/<name>] for a cluster-scoped kind (GatewayClass).

``metadata.resourceVersion`` is the Consul ModifyIndex. A PUT must carry the
version it read: a stale one gets 409, none gets 428 (Precondition Required),
so a writer holding an old read never silently overwrites a newer update.
`?force=true` says "last write wins" on purpose (still compare-and-set against
the version read just before, so it never lands on a half-written value).
`meshctl apply` goes through `/v1/apply`, which reads and writes for the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from api.gateway_api.translate import backend_hosts, translate
from api.resources import (
    GATEWAY_API,
    KindInfo,
    Resource,
    check_document,
    kind_by_plural,
    kinds,
    valid_name,
    valid_namespace,
)
from api.store import ConfigStore, Conflict, NotFound, StoredResource, Write
from galley import proxy_status
from galley.dependencies import (
    StoreDep,
    off_loop,
    read_documents,
    require_reader,
    require_writer,
    writer_name,
)
from galley.errors import ApiError, details
from galley.openapi import (
    NAME_PATTERN,
    NAMESPACE_PATTERN,
    Document,
    ResourceList,
    Status,
    answers,
    enum,
    resource_body,
    writer,
)
from galley.pilots import envoy_gate

__all__ = ["router"]

router = APIRouter(prefix="/apis", tags=["resources"])


def _one_of(values: set[str], description: str) -> Any:
    return Path(description=description, json_schema_extra=enum(values))


# The schema names the values Galley serves; the handlers check them all the same
# (404 for an unknown type, 400 for a name that breaks the metadata rules).
Group = Annotated[str, _one_of({k.group for k in kinds().values()}, "API group")]
Version = Annotated[str, _one_of({v for k in kinds().values() for v in k.versions}, "API version")]
Plural = Annotated[str, _one_of({k.plural for k in kinds().values()}, "Resource type")]
Namespace = Annotated[str, Path(json_schema_extra={"pattern": NAMESPACE_PATTERN})]
Name = Annotated[str, Path(json_schema_extra={"pattern": NAME_PATTERN, "maxLength": 253})]


def _where(namespace: str, name: str | None = None) -> None:
    """Path parameters follow the rules of the metadata they name (checked in full, so a
    trailing newline or a control character is refused before it reaches the store)."""
    if not valid_namespace(namespace):
        raise ApiError(400, "BadRequest", f"namespace {namespace!r} is not a DNS-1123 label")
    if name is not None and not valid_name(name):
        raise ApiError(400, "BadRequest", f"name {name!r} is not a lower-case DNS-1123 name")


def _kind(group: str, version: str, plural: str, namespaced: bool = True) -> KindInfo:
    info = kind_by_plural(plural, group)
    if info is None or version not in info.versions:
        raise ApiError(404, "NotFound", f"no resource type {group}/{version} {plural}")
    if info.cluster_scoped and namespaced:
        raise ApiError(
            404, "NotFound", f"{plural} are cluster-scoped: /apis/{group}/{version}/{plural}"
        )
    if not info.cluster_scoped and not namespaced:
        raise ApiError(
            404,
            "NotFound",
            f"{plural} live in namespaces: /apis/{group}/{version}/namespaces/NS/{plural}",
        )
    return info


def _out(
    stored: StoredResource,
    version: str | None = None,
    status: Mapping[str, Mapping[str, Any]] | None = None,
    distribution: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The resource as served; a Gateway API object with its status (`_statuses`), and
    whether the proxies applied it (`_distribution`)."""
    body = stored.resource.to_dict(with_version=True)
    if version:
        body["apiVersion"] = f"{stored.resource.group}/{version}"
    if status is not None and stored.resource.ref in status:
        body["status"] = status[stored.resource.ref]
    if distribution is not None:
        proxy_status.with_status(body, distribution.get(stored.resource.ref))
    return body


async def _distribution(
    request: Request, stored: list[StoredResource]
) -> Mapping[str, Mapping[str, Any]]:
    """Per resource, its Reconciled condition from every Pilot (galley/proxy_status.py)."""
    settings = request.app.state.settings
    revisions = {st.resource.ref: st.version for st in stored}
    return await proxy_status.statuses(settings.pilot_http_addr, revisions)


async def _statuses(
    request: Request, s: ConfigStore, info: KindInfo
) -> Mapping[str, Mapping[str, Any]] | None:
    """The status of every Gateway API object, from translating all of the stored config
    against the catalog as Pilot does (None for other kinds: they carry no status)."""
    if info.group != GATEWAY_API:
        return None
    config = [st.resource for st in await s.list_resources()]
    hosts = backend_hosts(config, await request.app.state.catalog_services())
    translation = await off_loop(request, translate, config, hosts)
    return translation.status


async def _checked_one(
    request: Request, info: KindInfo, namespace: str, name: str | None
) -> Resource:
    docs = await read_documents(request)
    if len(docs) != 1:
        raise ApiError(400, "BadRequest", f"expected one document, got {len(docs)}")
    where, doc = docs[0]
    if isinstance(doc, dict):
        meta = doc.setdefault("metadata", {}) if isinstance(doc.get("metadata", {}), dict) else None
        if meta is not None:
            if namespace:
                meta.setdefault("namespace", namespace)
            if name is not None:
                meta.setdefault("name", name)
    checked = await off_loop(request, check_document, doc, where, namespace or "default")
    if checked.resource is None or checked.errors:
        raise ApiError(
            422,
            "Invalid",
            f"{where}: the resource is invalid",
            details(where, checked.errors),
            details(where, checked.warnings),
        )
    res = checked.resource
    if res.kind_id != info.id:
        raise ApiError(400, "BadRequest", f"body is a {res.kind}, the path is for {info.plural}")
    if res.namespace != namespace:
        raise ApiError(
            400,
            "BadRequest",
            f"body namespace {res.namespace!r} differs from the path's {namespace!r}",
        )
    if name is not None and res.name != name:
        raise ApiError(
            400, "BadRequest", f"body name {res.name!r} differs from the path's {name!r}"
        )
    return res


@router.get(
    "/{group}/{version}/{plural}",
    dependencies=[Depends(require_reader)],
    responses=answers(ResourceList, 200, 401, 404),
)
async def list_all(
    request: Request, group: Group, version: Version, plural: Plural, s: StoreDep
) -> dict[str, Any]:
    """Every resource of the type, in every namespace (or the cluster-scoped ones)."""
    found = kind_by_plural(plural, group)
    info = _kind(group, version, plural, not (found and found.cluster_scoped))
    return await _list(request, s, info, version, None)


@router.get(
    "/{group}/{version}/namespaces/{namespace}/{plural}",
    dependencies=[Depends(require_reader)],
    responses=answers(ResourceList, 200, 400, 401, 404),
)
async def list_namespace(
    request: Request,
    group: Group,
    version: Version,
    namespace: Namespace,
    plural: Plural,
    s: StoreDep,
) -> dict[str, Any]:
    _where(namespace)
    return await _list(request, s, _kind(group, version, plural), version, namespace)


async def _list(
    request: Request, s: ConfigStore, info: KindInfo, version: str, namespace: str | None
) -> dict[str, Any]:
    items = await s.list_resources(info.id, namespace)
    status = await _statuses(request, s, info)
    distribution = await _distribution(request, items)
    return {
        "apiVersion": f"{info.group}/{version}",
        "kind": f"{info.kind}List",
        "items": [_out(i, version, status, distribution) for i in items],
    }


@router.get(
    "/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    dependencies=[Depends(require_reader)],
    responses=answers(Document, 200, 400, 401, 404),
)
async def get_one(
    request: Request,
    group: Group,
    version: Version,
    namespace: Namespace,
    plural: Plural,
    name: Name,
    s: StoreDep,
) -> dict[str, Any]:
    _where(namespace, name)
    return await _get(request, s, _kind(group, version, plural), version, namespace, name)


@router.get(
    "/{group}/{version}/{plural}/{name}",
    dependencies=[Depends(require_reader)],
    responses=answers(Document, 200, 400, 401, 404),
)
async def get_cluster_scoped(
    request: Request, group: Group, version: Version, plural: Plural, name: Name, s: StoreDep
) -> dict[str, Any]:
    _where("default", name)
    return await _get(request, s, _kind(group, version, plural, False), version, "", name)


async def _get(
    request: Request, s: ConfigStore, info: KindInfo, version: str, namespace: str, name: str
) -> dict[str, Any]:
    try:
        stored = await s.get(info.id, namespace, name)
    except NotFound as err:
        raise ApiError(404, "NotFound", str(err)) from err
    status = await _statuses(request, s, info)
    return _out(stored, version, status, await _distribution(request, [stored]))


@router.post(
    "/{group}/{version}/namespaces/{namespace}/{plural}",
    status_code=201,
    dependencies=[Depends(require_writer)],
    responses=answers(Document, 201, 400, 401, 403, 404, 409, 413, 415, 422),
    openapi_extra=writer(resource_body()),
)
async def create(
    request: Request,
    group: Group,
    version: Version,
    namespace: Namespace,
    plural: Plural,
    s: StoreDep,
) -> dict[str, Any]:
    _where(namespace)
    return await _create(request, s, _kind(group, version, plural), version, namespace)


@router.post(
    "/{group}/{version}/{plural}",
    status_code=201,
    dependencies=[Depends(require_writer)],
    responses=answers(Document, 201, 400, 401, 403, 404, 409, 413, 415, 422),
    openapi_extra=writer(resource_body()),
)
async def create_cluster_scoped(
    request: Request, group: Group, version: Version, plural: Plural, s: StoreDep
) -> dict[str, Any]:
    return await _create(request, s, _kind(group, version, plural, False), version, "")


async def _create(
    request: Request, s: ConfigStore, info: KindInfo, version: str, namespace: str
) -> dict[str, Any]:
    res = await _checked_one(request, info, namespace, None)
    await envoy_gate(request, [res])  # Envoy refusing the planned config: 422, nothing stored
    try:
        (stored,) = await s.write([Write(res, None)], by=writer_name(request))
    except Conflict as err:
        raise ApiError(409, "AlreadyExists", f"{res.ref} already exists") from err
    request.app.state.metrics.writes.labels("create").inc()
    return _out(stored, version)


@router.put(
    "/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    dependencies=[Depends(require_writer)],
    responses=answers(Document, 200, 400, 401, 403, 404, 409, 413, 415, 422, 428),
    openapi_extra=writer(resource_body()),
)
async def replace(
    request: Request,
    group: Group,
    version: Version,
    namespace: Namespace,
    plural: Plural,
    name: Name,
    s: StoreDep,
    force: bool = False,
) -> dict[str, Any]:
    _where(namespace, name)
    info = _kind(group, version, plural)
    return await _replace(request, s, info, version, namespace, name, force)


@router.put(
    "/{group}/{version}/{plural}/{name}",
    dependencies=[Depends(require_writer)],
    responses=answers(Document, 200, 400, 401, 403, 404, 409, 413, 415, 422, 428),
    openapi_extra=writer(resource_body()),
)
async def replace_cluster_scoped(
    request: Request,
    group: Group,
    version: Version,
    plural: Plural,
    name: Name,
    s: StoreDep,
    force: bool = False,
) -> dict[str, Any]:
    _where("default", name)
    info = _kind(group, version, plural, False)
    return await _replace(request, s, info, version, "", name, force)


async def _replace(
    request: Request,
    s: ConfigStore,
    info: KindInfo,
    version: str,
    namespace: str,
    name: str,
    force: bool,
) -> dict[str, Any]:
    res = await _checked_one(request, info, namespace, name)
    await envoy_gate(request, [res])  # Envoy refusing the planned config: 422, nothing stored
    if res.resource_version is not None:
        if not res.resource_version.isdigit():
            raise ApiError(400, "BadRequest", "metadata.resourceVersion must be a number")
        expect = int(res.resource_version)
    elif not force:
        raise ApiError(
            428,
            "PreconditionRequired",
            "an update must carry the metadata.resourceVersion it read "
            "(or ?force=true to overwrite whatever is stored)",
        )
    else:
        try:
            expect = (await s.get(info.id, namespace, name)).version
        except NotFound as err:
            raise ApiError(404, "NotFound", str(err)) from err
    try:
        (stored,) = await s.write([Write(res, expect)], by=writer_name(request))
    except Conflict as err:
        raise ApiError(
            409,
            "Conflict",
            f"{res.ref} was changed by someone else (resourceVersion "
            f"{expect} is stale): get it again and reapply your change",
        ) from err
    request.app.state.metrics.writes.labels("replace").inc()
    return _out(stored, version)


@router.delete(
    "/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    dependencies=[Depends(require_writer)],
    responses=answers(Status, 200, 400, 401, 403, 404, 409),
    openapi_extra=writer(),
)
async def delete(
    request: Request,
    group: Group,
    version: Version,
    namespace: Namespace,
    plural: Plural,
    name: Name,
    s: StoreDep,
    resource_version: int | None = None,
) -> Response:
    _where(namespace, name)
    info = _kind(group, version, plural)
    return await _delete(request, s, info, namespace, name, resource_version)


@router.delete(
    "/{group}/{version}/{plural}/{name}",
    dependencies=[Depends(require_writer)],
    responses=answers(Status, 200, 400, 401, 403, 404, 409),
    openapi_extra=writer(),
)
async def delete_cluster_scoped(
    request: Request,
    group: Group,
    version: Version,
    plural: Plural,
    name: Name,
    s: StoreDep,
    resource_version: int | None = None,
) -> Response:
    _where("default", name)
    info = _kind(group, version, plural, False)
    return await _delete(request, s, info, "", name, resource_version)


async def _delete(
    request: Request,
    s: ConfigStore,
    info: KindInfo,
    namespace: str,
    name: str,
    resource_version: int | None,
) -> Response:
    try:
        await s.delete(info.id, namespace, name, resource_version, by=writer_name(request))
    except NotFound as err:
        raise ApiError(404, "NotFound", str(err)) from err
    except Conflict as err:
        where = f"{namespace}/{name}" if namespace else name
        raise ApiError(409, "Conflict", f"{info.kind} {where} changed meanwhile") from err
    request.app.state.metrics.writes.labels("delete").inc()
    return Response(status_code=200, content=b'{"status":"Success"}', media_type="application/json")
