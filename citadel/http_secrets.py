"""Citadel's HTTP API for gateway credentials, admin only (Istio's credentialName secrets).

- ``PUT /v1/secrets/{namespace}/{name}`` ``{"type": "tls", "cert", "key", "caCert"?}`` or
  ``{"type": "generic", "caCert"}`` -> 201 (created) / 200 (replaced)
  ``{"namespace", "name", "type", "notAfter", "warnings"?}``
- ``GET /v1/secrets/{namespace}`` -> ``{"namespace", "secrets": [{"name", "type", "notAfter"}]}``
- ``DELETE /v1/secrets/{namespace}/{name}`` -> 200, or 404

No answer and no log line carries key material: answers name, type and
expiry; a refusal names the field at fault.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from api.documents import DocumentError, parse_json
from citadel.credential_store import Conflict, CredentialStore, StoreUnavailable
from citadel.credentials import (
    CredentialError,
    GatewayCredential,
    check_name,
    check_namespace,
    credential_from_document,
    credential_warnings,
)

__all__ = ["SecretsApi"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.Response]]
StoreHandler = Callable[[web.Request, CredentialStore], Awaitable[web.Response]]
OFF = (
    "gateway credentials are off: Citadel keeps them in Consul, start it with --consul-addr "
    "(env CITADEL_CONSUL_ADDR)"
)


def _when(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad(err: CredentialError) -> web.Response:
    return web.json_response({"error": f"bad request: {err}", "field": err.field}, status=400)


def _summary(cred: GatewayCredential) -> dict[str, Any]:
    return {
        "namespace": cred.namespace,
        "name": cred.name,
        "type": cred.type,
        "notAfter": _when(cred.not_after),
    }


class SecretsApi:
    def __init__(
        self,
        store: CredentialStore | None,
        refuse: Callable[[web.Request], web.Response | None],
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        """`refuse`: the admin check, None when the caller holds the admin credential."""
        self._store = store
        self._refuse = refuse
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.router.add_put("/v1/secrets/{namespace}/{name}", self._guard(self._put))
        app.router.add_get("/v1/secrets/{namespace}", self._guard(self._list))
        app.router.add_delete("/v1/secrets/{namespace}/{name}", self._guard(self._delete))

    def _guard(self, handler: StoreHandler) -> Handler:
        """Admin first, then whether credentials are on, then Consul's own failures."""

        async def run(request: web.Request) -> web.Response:
            refused = self._refuse(request)
            if refused is not None:
                return refused
            if self._store is None:
                return web.json_response({"error": OFF}, status=503)
            try:
                return await handler(request, self._store)
            except StoreUnavailable as err:
                return web.json_response({"error": str(err)}, status=503)
            except Conflict as err:
                return web.json_response({"error": str(err)}, status=409)

        return run

    async def _put(self, request: web.Request, store: CredentialStore) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            check_name(namespace, name)
            try:
                doc = parse_json((await request.read()).decode("utf-8"))
            except (DocumentError, UnicodeDecodeError) as err:
                raise CredentialError("body", str(err)) from None
            cred = credential_from_document(namespace, name, doc)
        except CredentialError as err:
            return _bad(err)
        created, cred = await store.put(cred)
        log.info(
            "gateway credential %s/%s %s (%s, valid until %s)",
            namespace,
            name,
            "created" if created else "replaced",
            cred.type,
            _when(cred.not_after),
        )
        body = _summary(cred)
        warnings = credential_warnings(cred, self._clock())
        if warnings:
            body["warnings"] = warnings
        return web.json_response(body, status=201 if created else 200)

    async def _list(self, request: web.Request, store: CredentialStore) -> web.Response:
        namespace = request.match_info["namespace"]
        try:
            check_namespace(namespace)
        except CredentialError as err:
            return _bad(err)
        secrets = []
        for entry in await store.entries(namespace):
            if entry.credential is None:
                secrets.append({"name": entry.name, "type": None, "error": entry.problem})
            else:
                summary = _summary(entry.credential)
                secrets.append({k: summary[k] for k in ("name", "type", "notAfter")})
        return web.json_response({"namespace": namespace, "secrets": secrets})

    async def _delete(self, request: web.Request, store: CredentialStore) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            check_name(namespace, name)
        except CredentialError as err:
            return _bad(err)
        if not await store.delete(namespace, name):
            return web.json_response(
                {"error": f"no gateway credential {name!r} in namespace {namespace!r}"},
                status=404,
            )
        log.info("gateway credential %s/%s deleted", namespace, name)
        return web.json_response({"namespace": namespace, "name": name, "deleted": True})
