"""Request plumbing shared by the routers: the store, who may write, reading bodies.

Writers are named: Galley's token file may hold several `NAME:TOKEN` lines (blank
lines and `#` comments skipped); a bare token line, or the `token` setting, is the
writer "admin". The name of the token a write came with is what the config history
records as "by"; a token itself is never stored or logged.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from api.documents import BeyondBounds, DocumentError, parse_json, parse_yaml
from api.store import ConfigStore
from galley.errors import ApiError

__all__ = [
    "ADMIN",
    "StoreDep",
    "off_loop",
    "parse_tokens",
    "read_body",
    "read_documents",
    "require_reader",
    "require_writer",
    "store",
    "writer_name",
    "writers",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

ADMIN = "admin"  # the name of a token given without one
_WRITER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,62}")

_JSON = ("application/json",)
_YAML = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def store(request: Request) -> ConfigStore:
    return request.app.state.store  # type: ignore[no-any-return]


StoreDep = Annotated[ConfigStore, Depends(store)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def parse_tokens(text: str) -> list[tuple[str, str]]:
    """(name, token) for each line of a token file: `NAME:TOKEN`, or a bare token (named
    "admin"; so is a line whose part before ':' is not a name)."""
    out: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        if sep and _WRITER_NAME.fullmatch(name) and token.strip():
            out.append((name, token.strip()))
        else:
            out.append((ADMIN, line))
    return out


def writers(request: Request) -> list[tuple[str, str]]:
    """Who may write: (name, token) pairs, read afresh (a token file can be rotated)."""
    settings = request.app.state.settings
    if settings.token_file:
        try:
            with open(settings.token_file) as f:
                return parse_tokens(f.read())
        except (OSError, UnicodeDecodeError) as err:
            log.error("cannot read the token file %s: %s", settings.token_file, err)
            raise ApiError(503, "ServiceUnavailable", "Galley cannot read its token file") from None
    token = settings.token.get_secret_value() if settings.token else ""
    return [(ADMIN, token)] if token else []


def _token_name(request: Request, known: list[tuple[str, str]]) -> str | None:
    """The name of the token the request carries (None: none, or not a known one)."""
    given = _bearer(request)
    if not given:
        return None
    found = None
    for name, token in known:  # every one compared, in constant time
        if hmac.compare_digest(token.encode(), given.encode()) and found is None:
            found = name
    return found


def _token_ok(request: Request) -> bool:
    return _token_name(request, writers(request)) is not None


def require_writer(request: Request) -> None:
    """Writes need a token, always; with no token configured nothing may write. The
    token's name is kept on the request (`writer_name`) for the history."""
    known = writers(request)
    if not known:
        raise ApiError(403, "Forbidden", "writes are disabled: Galley has no token configured")
    name = _token_name(request, known)
    if name is None:
        raise ApiError(401, "Unauthorized", "writes need 'Authorization: Bearer <token>'")
    request.state.writer = name


def writer_name(request: Request) -> str:
    """Who is writing: the name of the request's token (after `require_writer`)."""
    return str(getattr(request.state, "writer", ""))


def require_reader(request: Request) -> None:
    """Reads are open from loopback; from elsewhere they need the token too."""
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in ("localhost", "testclient")
    if not loopback and not _token_ok(request):
        raise ApiError(401, "Unauthorized", "reads from outside loopback need the token")


async def read_body(request: Request) -> tuple[bytes, str]:
    """The body (bounded) and whether it is 'json' or 'yaml'."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in _JSON:
        kind = "json"
    elif ctype in _YAML:
        kind = "yaml"
    else:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"content type {ctype or '(none)'!r}: send application/json or application/yaml",
        )
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "RequestEntityTooLarge", f"body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "RequestEntityTooLarge", f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks), kind


async def read_documents(request: Request) -> list[tuple[str, Any]]:
    """Every document in the body: a YAML stream, a JSON object, or a JSON list."""
    body, kind = await read_body(request)
    source = request.headers.get("x-source-name", "request")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, "BadRequest", f"body is not UTF-8: {err}") from err
    try:
        if kind == "json":
            parsed = await off_loop(request, parse_json, text)
            docs = parsed if isinstance(parsed, list) else [parsed]
        else:
            docs = await off_loop(request, parse_yaml, text)
    except BeyondBounds as err:
        raise ApiError(422, "Invalid", f"body: {err}") from err
    except DocumentError as err:
        raise ApiError(400, "BadRequest", f"body: {err}") from err
    if not docs:
        raise ApiError(400, "BadRequest", "the body holds no document")
    return [(f"{source}:{i}", d) for i, d in enumerate(docs)]


async def off_loop(request: Request, work: Callable[..., T], *args: Any) -> T:
    """Run a request's CPU work (parsing, validating) off the event loop, a few at a time.

    /healthz and every other request are answered meanwhile. At most
    `max_parallel_checks` bodies are worked on at once, each bounded in size, so
    Galley's memory is bounded however many clients send; a request that waits
    longer than `check_timeout_s` for its turn, or whose work takes longer, is
    answered 503 (the work still holds its slot until it ends).
    """
    settings = request.app.state.settings
    slots: asyncio.Semaphore = request.app.state.check_slots
    try:
        await asyncio.wait_for(slots.acquire(), settings.check_timeout_s)
    except TimeoutError:
        raise ApiError(
            503, "ServiceUnavailable", "Galley is busy checking other bodies: retry"
        ) from None
    task = asyncio.ensure_future(asyncio.to_thread(work, *args))
    task.add_done_callback(lambda _: slots.release())
    try:
        return await asyncio.wait_for(asyncio.shield(task), settings.check_timeout_s)
    except TimeoutError:
        raise ApiError(
            503,
            "ServiceUnavailable",
            f"checking the body took over {settings.check_timeout_s:g}s: send less at once",
        ) from None
