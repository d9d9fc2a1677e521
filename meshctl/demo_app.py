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
from aiohttp.typedefs import Handler, Middleware

__all__ = ["main"]


FORWARDED = (
    "end-user",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "traceparent",
    "tracestate",
    "authorization",
)


def _internal(path: str) -> bool:
    """Health, fault toggles and the counter: not counted, never failed on purpose."""
    return path in ("/healthz", "/_count") or path.startswith(("/health/", "/fail/"))


def _counting(state: dict[str, Any], instance: str) -> Middleware:
    """Count served requests, and answer 500 instead while failing is on."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _internal(request.path):
            state["count"] += 1
            if state["failing"]:
                return web.json_response({"instance": instance, "failing": True}, status=500)
        return await handler(request)

    return count


async def _call(
    session: aiohttp.ClientSession, url: str, proxy: str | None, headers: dict[str, str]
) -> dict[str, Any]:
    """The upstream's status and body (JSON when it parses), or the client error."""
    try:
        async with session.get(url, proxy=proxy, headers=headers) as resp:
            text = await resp.text()
            try:
                return {"status": resp.status, "body": json.loads(text)}
            except ValueError:
                return {"status": resp.status, "body": text}
    except aiohttp.ClientError as err:
        return {"status": 0, "error": str(err)}


async def _call_upstreams(
    request: web.Request, upstreams: list[str], proxy: str | None, body: dict[str, object]
) -> None:
    """Call every upstream (forwarding identity and trace headers) and add the answers."""
    # Propagate the caller's identity and trace headers, as bookinfo's apps do.
    headers = {h: request.headers[h] for h in FORWARDED if h in request.headers}
    session: aiohttp.ClientSession = request.app["session"]
    results = await asyncio.gather(*(_call(session, u, proxy, headers) for u in upstreams))
    body["upstream"] = results[0]
    body["upstreams"] = dict(zip(upstreams, results, strict=True))


def build_app(
    service: str,
    instance: str,
    upstream: str | list[str] | None,
    proxy: str | None,
    attrs: dict[str, str] | None = None,
    page: bool = False,
) -> web.Application:
    upstreams = [upstream] if isinstance(upstream, str) else list(upstream or [])
    state: dict[str, Any] = {"healthy": True, "failing": False, "flaky": 0, "count": 0}
    app = web.Application()

    app.middlewares.append(_counting(state, instance))

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
        body.update(attrs or {})
        if upstreams:
            await _call_upstreams(request, upstreams, proxy, body)
        if page and request.path == "/productpage":
            return web.Response(text=render_page(body), content_type="text/html")
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


def _served(result: dict[str, Any] | None) -> dict[str, Any]:
    body = (result or {}).get("body")
    return body if isinstance(body, dict) and (result or {}).get("status") == 200 else {}


def render_page(body: dict[str, Any]) -> str:
    """The bookinfo-like front page: which versions served it, and what they said."""
    ups = body.get("upstreams", {})
    details = next((_served(r) for u, r in ups.items() if "details" in u), {})
    reviews_result = next((r for u, r in ups.items() if "reviews" in u), None)
    reviews = _served(reviews_result)
    ratings = next(
        (_served(r) for u, r in reviews.get("upstreams", {}).items() if "ratings" in u), {}
    )
    ratings_error = next(
        (
            r
            for u, r in reviews.get("upstreams", {}).items()
            if "ratings" in u and r.get("status") != 200
        ),
        None,
    )
    user = body.get("headers", {}).get("End-User") or body.get("headers", {}).get("end-user")
    stars = reviews.get("stars", "none")
    if ratings:
        rating_line = f"{'★' * 4}{'☆'} ({stars} stars, from {ratings.get('instance')})"
    elif ratings_error is not None:
        rating_line = f"Ratings service is currently unavailable ({ratings_error.get('status')})"
    else:
        rating_line = "no ratings shown by this version"
    lines = [
        f"<h1>The Comedy of Errors</h1><p>user: {user or 'anonymous'}</p>",
        f"<p>Book details: {details.get('instance', 'unavailable')}</p>",
        f"<p>Reviews: {reviews.get('instance', 'unavailable')}"
        f" (status {reviews_result.get('status') if reviews_result else 'n/a'})</p>",
        f"<p>Ratings: {rating_line}</p>",
    ]
    return "<html><body>" + "\n".join(lines) + "</body></html>\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meshctl.demo_app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--service", required=True)
    parser.add_argument("--instance", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--upstream", action="append", default=[], help="URL to call on each request (repeatable)"
    )
    parser.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="K=V",
        help="extra field in every answer (e.g. stars=black)",
    )
    parser.add_argument(
        "--page", action="store_true", help="serve the HTML front page at /productpage"
    )
    parser.add_argument(
        "--proxy", default=os.environ.get("http_proxy"), help="sidecar outbound URL"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    attrs = dict(a.partition("=")[::2] for a in args.attr)
    app = build_app(
        args.service,
        args.instance or f"{args.service}-{args.port}",
        args.upstream,
        args.proxy,
        attrs,
        page=args.page,
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
