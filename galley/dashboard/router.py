"""The dashboard's routes: pages under /ui/, their data under /v1/dashboard/.

    GET /ui/graph | /ui/proxies | /ui/config | /ui/security   HTML (?partial=1: main part)
    GET /ui/static/dashboard.js | dashboard.css               the only assets, shipped here
    GET /v1/dashboard/graph | proxies | config | security     the same data as JSON
    ?namespace=NS narrows any of them to one namespace.

Reads follow Galley's rule: open from loopback, the token from elsewhere; a browser
off loopback gives the token once at /ui/login for a cookie (session.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.resources import valid_namespace
from api.store import StoreUnavailable
from galley import proxy_status
from galley.dashboard import html, views
from galley.dashboard.catalog import Workload, read_catalog
from galley.dashboard.graph import Graph, build, narrowed
from galley.dashboard.models import ConfigView, GraphView, ProxiesView, SecurityView
from galley.dashboard.policy import KINDS
from galley.dashboard.scrape import Scraper
from galley.dashboard.session import (
    COOKIE,
    allowed,
    proof,
    require_dashboard_reader,
    token_from_form,
)
from galley.dashboard.targets import parse_targets
from galley.errors import ApiError
from galley.openapi import NAMESPACE_PATTERN, answers

__all__ = ["router"]

_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The scraper and its loop (idle until someone looks), stopped with Galley."""
    settings = app.state.settings
    scraper = Scraper(lambda: app.state.store.endpoints, parse_targets(settings.stats_targets))
    app.state.dashboard = scraper
    task = asyncio.create_task(scraper.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


router = APIRouter(lifespan=_lifespan)
# The JSON answers: Galley's read rule, or the dashboard's cookie (session.py).
Reader = [Depends(require_dashboard_reader)]


# Every view may be narrowed to one namespace (the graph: calls from or to it).
NamespaceQuery = Query(
    None,
    description="Only this namespace (the graph: services in it and calls from or to it)",
    json_schema_extra={"pattern": NAMESPACE_PATTERN},
)


def _only(namespace: str | None) -> str | None:
    if namespace is not None and not valid_namespace(namespace):
        raise ApiError(400, "BadRequest", f"namespace {namespace!r} is not a DNS-1123 label")
    return namespace


def _scraper(request: Request) -> Scraper:
    return request.app.state.dashboard  # type: ignore[no-any-return]


async def _graph(request: Request, namespace: str | None = None) -> tuple[Graph, dict[str, Any]]:
    scraper = _scraper(request)
    await scraper.fresh()
    targets = scraper.targets()
    stats = {t.instance: scraper.window.stats(t.instance) for t in targets}
    static = parse_targets(request.app.state.settings.stats_targets)
    g = build(scraper.workloads, static, targets, stats)
    if namespace is not None:
        g = narrowed(g, namespace)
    results = scraper.results
    view = {
        "window_seconds": scraper.window.seconds,
        "nodes": [dataclasses.asdict(n) for n in g.nodes],
        "edges": [dataclasses.asdict(edge) for edge in g.edges],
        "width": g.width,
        "height": g.height,
        "targets": [
            {
                "instance": t.instance,
                "service": t.service,
                "namespace": t.namespace,
                "address": t.address,
                "ok": t.instance in results and results[t.instance].ok,
                "error": results[t.instance].error if t.instance in results else "not read yet",
            }
            for t in targets
        ],
        "error": scraper.catalog_error,
    }
    return g, view


async def _proxies(request: Request, namespace: str | None = None) -> dict[str, Any]:
    _scraper(request).watched()
    view = await views.proxies(request.app.state.settings.pilot_http_addr)
    if namespace is not None:
        view["proxies"] = [p for p in view["proxies"] if p["namespace"] == namespace]
    return view


async def _config(request: Request, namespace: str | None = None) -> dict[str, Any]:
    settings = request.app.state.settings

    async def conditions(revisions: dict[str, int]) -> Any:
        return await proxy_status.statuses(settings.pilot_http_addr, revisions)

    # Link each resource's history when this Galley serves one (its routes are in its
    # OpenAPI document, built once).
    paths = request.app.openapi().get("paths", {})
    history = any(p.startswith("/v1/history/") for p in paths)
    services = set(await request.app.state.catalog_services())
    view = await views.config_rows(request.app.state.store, services, conditions, history)
    if namespace is not None:
        view["resources"] = [r for r in view["resources"] if r["namespace"] == namespace]
    return view


async def _security(request: Request, namespace: str | None = None) -> dict[str, Any]:
    settings = request.app.state.settings
    store = request.app.state.store
    errors: list[str] = []
    workloads: list[Workload]
    try:
        workloads = await asyncio.wait_for(read_catalog(store.endpoints), 5)
    except Exception as err:  # shown on the page, as everything else that is down
        workloads = []
        errors.append(f"catalog unavailable: {err or type(err).__name__}")
    policies = [s.resource for k in KINDS for s in await store.list_resources(k)]
    try:
        credential = settings.citadel_credential()
    except OSError as err:
        credential = None
        errors.append(f"Citadel credential unreadable: {err.strerror}")
    certs, cert_error = await views.certificates(settings.citadel_http_addr, credential)
    if cert_error:
        errors.append(cert_error)
    if namespace is not None:
        workloads = [w for w in workloads if w.instance.namespace == namespace]
    rows = views.security_rows(
        workloads,
        policies,
        certs,
        settings.trust_domain,
        settings.root_namespace,
        datetime.datetime.now(datetime.UTC),
    )
    return {"trust_domain": settings.trust_domain, "workloads": rows, "error": "; ".join(errors)}


# --- JSON ---


@router.get(
    "/v1/dashboard/graph",
    dependencies=Reader,
    tags=["dashboard"],
    response_model=GraphView,
    responses=answers(GraphView, 200, 400, 401),
)
async def graph_json(request: Request, namespace: str | None = NamespaceQuery) -> dict[str, Any]:
    """Services, versions and the calls between them over the last minute, laid out."""
    return (await _graph(request, _only(namespace)))[1]


@router.get(
    "/v1/dashboard/proxies",
    dependencies=Reader,
    tags=["dashboard"],
    response_model=ProxiesView,
    responses=answers(ProxiesView, 200, 400, 401),
)
async def proxies_json(request: Request, namespace: str | None = NamespaceQuery) -> dict[str, Any]:
    """Every proxy connected to any Pilot, its state per xDS type and its last NACK."""
    return await _proxies(request, _only(namespace))


@router.get(
    "/v1/dashboard/config",
    dependencies=Reader,
    tags=["dashboard"],
    response_model=ConfigView,
    responses=answers(ConfigView, 200, 400, 401),
)
async def config_json(request: Request, namespace: str | None = NamespaceQuery) -> dict[str, Any]:
    """Every stored resource, its status conditions and analysis warnings."""
    _scraper(request).watched()
    return await _config(request, _only(namespace))


@router.get(
    "/v1/dashboard/security",
    dependencies=Reader,
    tags=["dashboard"],
    response_model=SecurityView,
    responses=answers(SecurityView, 200, 400, 401),
)
async def security_json(request: Request, namespace: str | None = NamespaceQuery) -> dict[str, Any]:
    """Per workload: SPIFFE identity, certificate expiry, mTLS mode, selecting policies."""
    return await _security(request, _only(namespace))


# --- pages ---


@router.get("/ui", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/graph", status_code=307)


@router.get("/ui/login", include_in_schema=False)
async def login_form(failed: bool = Query(False)) -> HTMLResponse:
    return HTMLResponse(html.login(failed), status_code=401 if failed else 200)


@router.post("/ui/login", include_in_schema=False)
async def login(request: Request) -> Response:
    token = await token_from_form(request)
    if token is None:
        return RedirectResponse("/ui/login?failed=true", status_code=303)
    answer = RedirectResponse("/ui/graph", status_code=303)
    answer.set_cookie(COOKIE, proof(token), httponly=True, samesite="strict", path="/")
    return answer


@router.get("/ui/static/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in _ASSETS:
        raise ApiError(404, "NotFound", f"no asset {name!r}")
    body = resources.files("galley.dashboard").joinpath("static", name).read_bytes()
    return Response(body, media_type=_ASSETS[name], headers={"Cache-Control": "max-age=300"})


@router.get("/ui/{name}", include_in_schema=False)
async def ui_page(
    request: Request,
    name: str,
    partial: bool = Query(False),
    namespace: str | None = NamespaceQuery,
) -> Response:
    if name not in dict(html.PAGES):
        raise ApiError(404, "NotFound", f"no dashboard page {name!r}")
    if not allowed(request):  # a browser off loopback: ask for the token once
        if partial:
            raise ApiError(401, "Unauthorized", "the dashboard's session is gone: log in again")
        return RedirectResponse("/ui/login", status_code=303)
    only = _only(namespace)
    try:
        if name == "graph":
            g, view = await _graph(request, only)
            body = html.graph_html(g, view)
        elif name == "proxies":
            body = html.proxies_html(await _proxies(request, only))
        elif name == "config":
            _scraper(request).watched()
            body = html.config_html(await _config(request, only))
        else:
            body = html.security_html(await _security(request, only))
    except StoreUnavailable as err:  # Consul down: say so on the page
        body = f'<p class="note err">config store unavailable: {html.e(err)}</p>'
    return HTMLResponse(body if partial else html.page(name, body, only))
