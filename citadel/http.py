"""Citadel's HTTP side: health, metrics, the root bundle, and minting tokens.

- ``GET /healthz``, ``GET /metrics``
- ``GET /v1/roots``   the trust bundle (PEM), public
- ``POST /v1/tokens`` ``{"namespace", "serviceAccount", "ttlSeconds"}`` with the
  admin credential as ``Authorization: Bearer`` -> ``{"token": ...}``
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from citadel.ca import CaError, CertificateAuthority
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
    ) -> None:
        self._ca, self._signer, self._metrics = ca, signer, metrics
        self._admin = admin_credential
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/v1/roots", self._roots)
        app.router.add_post("/v1/tokens", self._mint)
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

    async def _mint(self, request: web.Request) -> web.Response:
        expected = self._admin()
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if (
            not expected
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(expected.encode(), given.strip().encode())
        ):
            self._metrics.auth_failures.labels("admin").inc()
            return web.json_response(
                {"error": "minting tokens needs the admin credential"}, status=401
            )
        try:
            body = await request.json()
            token = self._signer.mint(
                str(body["namespace"]),
                str(body["serviceAccount"]),
                int(body.get("ttlSeconds", 86_400)),
            )
        except (ValueError, KeyError, TypeError) as err:
            return web.json_response({"error": f"bad request: {err}"}, status=400)
        except (TokenError, CaError) as err:
            return web.json_response({"error": str(err)}, status=400)
        self._metrics.tokens.inc()
        return web.json_response({"token": token})
