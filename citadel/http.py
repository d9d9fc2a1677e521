"""Citadel's HTTP side: health, metrics, the root bundle, minting tokens, gateway credentials.

- ``GET /healthz``, ``GET /metrics``
- ``GET /v1/roots``   the trust bundle (PEM), public
- ``POST /v1/tokens`` ``{"namespace", "serviceAccount", "ttlSeconds", "gateway"?}`` with
  the admin credential as ``Authorization: Bearer`` -> ``{"token": ...}``
- ``/v1/secrets/...`` gateway credentials, admin only (`citadel.http_secrets`)
- ``GET /v1/certificates`` the certificates issued since Citadel started (the newest
  few thousand): ``{"certificates": [{"identity", "serial", "notBefore", "notAfter"}]}``,
  oldest first, with the admin or the viewer credential; never key material
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.documents import DocumentError, parse_json
from citadel.ca import CaError, CertificateAuthority
from citadel.credential_store import CredentialStore
from citadel.http_secrets import SecretsApi
from citadel.metrics import CitadelMetrics
from citadel.tokens import TokenError, TokenSigner

__all__ = ["CitadelHttp"]


class CitadelHttp:
    def __init__(
        self,
        ca: CertificateAuthority,
        signer: TokenSigner,
        metrics: CitadelMetrics,
        admin_credential: Callable[[], str | None],
        credentials: CredentialStore | None = None,
        viewer_credential: Callable[[], str | None] = lambda: None,
    ) -> None:
        """`credentials`: None when Citadel has no Consul (the secrets API answers 503).
        `viewer_credential`: may list the issued certificates, nothing else."""
        self._ca, self._signer, self._metrics = ca, signer, metrics
        self._admin = admin_credential
        self._viewer = viewer_credential
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/v1/roots", self._roots)
        app.router.add_post("/v1/tokens", self._mint)
        app.router.add_get("/v1/certificates", self._certificates)
        refuse = functools.partial(self._refuse_unless_admin, what="managing gateway credentials")
        SecretsApi(credentials, refuse).add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self, host: str, port: int) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _roots(self, _: web.Request) -> web.Response:
        return web.Response(body=self._ca.root_bundle_pem(), content_type="application/x-pem-file")

    async def _metrics_page(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    def _refuse_unless_admin(
        self, request: web.Request, what: str, viewer_too: bool = False
    ) -> web.Response | None:
        """None when the request carries the admin credential (or, `viewer_too`, the
        viewer's); else the 401 to answer."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        accepted = [self._admin(), *([self._viewer()] if viewer_too else [])]
        matches = [
            bool(expected) and hmac.compare_digest(expected.encode(), given.strip().encode())
            for expected in accepted
            if expected is not None
        ]
        if scheme.lower() != "bearer" or not any(matches):
            self._metrics.auth_failures.labels("admin").inc()
            needs = "the admin or viewer credential" if viewer_too else "the admin credential"
            return web.json_response({"error": f"{what} needs {needs}"}, status=401)
        return None

    async def _certificates(self, request: web.Request) -> web.Response:
        refused = self._refuse_unless_admin(request, "listing issued certificates", viewer_too=True)
        if refused is not None:
            return refused
        return web.json_response({"certificates": [r.to_json() for r in self._ca.issued.records()]})

    async def _mint(self, request: web.Request) -> web.Response:
        refused = self._refuse_unless_admin(request, "minting tokens")
        if refused is not None:
            return refused
        try:
            namespace, account, ttl, gateway = _mint_request(await request.read())
            token = self._signer.mint(namespace, account, ttl, gateway)
        except (DocumentError, TokenError, CaError) as err:
            return web.json_response({"error": f"bad request: {err}"}, status=400)
        self._metrics.tokens.inc()
        return web.json_response({"token": token})


def _mint_request(body: bytes) -> tuple[str, str, int, bool]:
    """namespace, serviceAccount, ttlSeconds and gateway from a token request, typed strictly:
    no value is coerced (a list is not a name, 1e400 is not a lifetime), and the
    JSON is parsed with the same depth and size bounds as every other body."""
    try:
        doc: Any = parse_json(body.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DocumentError(f"body is not UTF-8: {err}") from err
    if not isinstance(doc, dict):
        raise DocumentError("the body must be a JSON object")
    unknown = sorted(set(doc) - {"namespace", "serviceAccount", "ttlSeconds", "gateway"})
    if unknown:
        raise DocumentError(f"unknown fields: {', '.join(map(repr, unknown))}")
    namespace, account = doc.get("namespace"), doc.get("serviceAccount")
    ttl = doc.get("ttlSeconds", 86_400)
    if not isinstance(namespace, str) or not isinstance(account, str):
        raise DocumentError("namespace and serviceAccount must be strings")
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        raise DocumentError("ttlSeconds must be a whole number of seconds")
    gateway = doc.get("gateway", False)
    if not isinstance(gateway, bool):
        raise DocumentError("gateway must be true or false")
    return namespace, account, ttl, gateway
