"""The Galley application: FastAPI routers over the Consul-backed config store.

Galley keeps no state of its own: everything is in Consul, so several
Galleys can serve at once and any of them can restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.catalog import service_port
from api.store import ConfigStore, StoreUnavailable
from galley.dashboard import router as dashboard
from galley.errors import ApiError
from galley.openapi import document
from galley.routers import config, history, plan, resources
from galley.settings import GalleySettings

__all__ = ["GalleyMetrics", "create_app"]

log = logging.getLogger(__name__)


class GalleyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.writes = Counter(
            "galley_config_writes", "Resources written", ["op"], registry=self.registry
        )
        self.rejections = Counter(
            "galley_config_rejections", "Requests refused", ["status"], registry=self.registry
        )


def create_app(settings: GalleySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = ConfigStore(settings.consul_addr, history_size=settings.history_size)
        yield
        await app.state.store.close()

    app = FastAPI(
        title="meshpy Galley",
        description="Validates Istio config (VirtualService, DestinationRule, Gateway, "
        "ServiceEntry, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication) "
        "and stores it in Consul KV. Writes need `Authorization: Bearer <token>`.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.check_slots = asyncio.Semaphore(settings.max_parallel_checks)
    app.state.metrics = GalleyMetrics()

    async def catalog_services() -> dict[str, frozenset[int]]:
        """The Consul catalog's services, host -> service ports (for analysis warnings and
        Gateway API status; empty when the catalog cannot be read)."""
        client = app.state.store.endpoints.client()
        ports: dict[str, set[int]] = {}
        try:
            _, services = await client.catalog.services()
            for name in services:
                _, nodes = await client.catalog.service(name)
                for node in nodes:
                    meta = node.get("ServiceMeta") or {}
                    host = f"{name}.{meta.get('namespace') or 'default'}.svc.cluster.local"
                    ports.setdefault(host, set()).add(service_port(meta))
        except Exception as err:  # advice only: no catalog, no service warnings
            log.debug("catalog unavailable for analysis: %s", err)
            return {}
        return {h: frozenset(p) for h, p in ports.items()}

    app.state.catalog_services = catalog_services

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        app.state.metrics.rejections.labels(str(err.status)).inc()
        return err.response()

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, err: StoreUnavailable) -> JSONResponse:
        app.state.metrics.rejections.labels("503").inc()
        return ApiError(503, "ServiceUnavailable", f"config store unavailable: {err}").response()

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        app.state.metrics.rejections.labels("400").inc()
        problems = [
            {"document": "request", "path": ".".join(map(str, e["loc"])), "message": e["msg"]}
            for e in err.errors()
        ]
        return ApiError(400, "BadRequest", "invalid request parameters", problems).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        """Routing's own answers (no such path, method not allowed) in the one shape."""
        reasons = {404: "NotFound", 405: "MethodNotAllowed"}
        app.state.metrics.rejections.labels(str(err.status_code)).inc()
        return ApiError(
            err.status_code, reasons.get(err.status_code, "BadRequest"), str(err.detail)
        ).response()

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            generate_latest(app.state.metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST
        )

    app.include_router(resources.router)
    app.include_router(config.router)
    app.include_router(history.router)
    app.include_router(plan.router)
    app.include_router(dashboard.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
