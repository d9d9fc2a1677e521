"""A small demo workload: says who it is and, optionally, calls the next hop.

    python -m meshctl.demo_app --service frontend --instance frontend-1 --port 9001 \
        --upstream http://backend/ --proxy http://127.0.0.1:15001

GET /            JSON: service, instance, the request's path and headers, and
                 the upstream's answer when --upstream is set (sent through
                 --proxy, i.e. the sidecar, exactly as an app using http_proxy)
GET /healthz     200, or 503 after POST /health/fail (until POST /health/pass)
GET /status/N    answers with status N
GET /flaky       fails (500) every other request: 500, 200, 500, ...
GET /delay?ms=N  answers after N milliseconds
GET /_count      how many requests this instance has served (JSON)
POST /fail/on, /fail/off   every request (but these and /healthz) answers 500 while on
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["main"]


def build_app(
    service: str, instance: str, upstream: str | None, proxy: str | None
) -> web.Application:
    state: dict[str, Any] = {"healthy": True, "failing": False, "flaky": 0, "count": 0}
    app = web.Application()

    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        internal = request.path in ("/healthz", "/_count") or request.path.startswith(
            ("/health/", "/fail/")
        )
        if not internal:
            state["count"] += 1
            if state["failing"]:
                return web.json_response({"instance": instance, "failing": True}, status=500)
        return await handler(request)

    app.middlewares.append(count)

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"service": service, "instance": instance}, status=code)

    async def flaky(_: web.Request) -> web.Response:
        state["flaky"] += 1
        code = 500 if state["flaky"] % 2 else 200
        return web.json_response({"service": service, "instance": instance}, status=code)

    async def delay(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
        return web.json_response({"service": service, "instance": instance})

    async def counter(_: web.Request) -> web.Response:
        return web.json_response({"instance": instance, "count": state["count"]})

    async def set_failing(request: web.Request) -> web.Response:
        state["failing"] = request.match_info["mode"] == "on"
        return web.Response(text="ok")

    async def index(request: web.Request) -> web.Response:
        body: dict[str, object] = {
            "service": service,
            "instance": instance,
            "path": request.path_qs,
            "headers": dict(request.headers),
        }
        if upstream:
            session: aiohttp.ClientSession = request.app["session"]
            try:
                async with session.get(upstream, proxy=proxy) as resp:
                    text = await resp.text()
                    try:
                        body["upstream"] = {"status": resp.status, "body": json.loads(text)}
                    except ValueError:
                        body["upstream"] = {"status": resp.status, "body": text}
            except aiohttp.ClientError as err:
                body["upstream"] = {"status": 0, "error": str(err)}
        return web.json_response(body)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(status=200 if state["healthy"] else 503, text=instance)

    async def set_health(request: web.Request) -> web.Response:
        state["healthy"] = request.match_info["mode"] == "pass"
        return web.Response(text="ok")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield
        await app["session"].close()

    app.router.add_get("/healthz", healthz)
    app.router.add_post("/health/{mode:pass|fail}", set_health)
    app.router.add_post("/fail/{mode:on|off}", set_failing)
    app.router.add_get("/status/{code:[1-5][0-9][0-9]}", status)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/delay", delay)
    app.router.add_get("/_count", counter)
    app.router.add_route("*", "/{tail:.*}", index)
    app.cleanup_ctx.append(session_ctx)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meshctl.demo_app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--service", required=True)
    parser.add_argument("--instance", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default=None, help="URL to call on each request")
    parser.add_argument(
        "--proxy", default=os.environ.get("http_proxy"), help="sidecar outbound URL"
    )
    args = parser.parse_args(argv)
    app = build_app(
        args.service, args.instance or f"{args.service}-{args.port}", args.upstream, args.proxy
    )
    try:
        web.run_app(
            app, host=args.host, port=args.port, print=None, access_log=None, handle_signals=True
        )
    except OSError as err:
        print(f"demo_app: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
