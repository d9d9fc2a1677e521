"""Reading the dashboard from a browser off loopback, where no `Authorization` header can
be sent: the reader gives Galley's token once (`/ui/login`) and gets a cookie that
proves it, never the token itself (an HMAC of a fixed text under the token), HttpOnly
and SameSite=Strict. It serves the dashboard's reads only: every write still needs
the bearer token in its header.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs

from fastapi import Request

from galley.dependencies import require_reader, writers
from galley.errors import ApiError

__all__ = ["COOKIE", "allowed", "proof", "require_dashboard_reader", "token_from_form"]

COOKIE = "meshpy_dashboard"
_WHAT = b"meshpy dashboard read access"
MAX_FORM_BYTES = 4096


def proof(token: str) -> str:
    return hmac.new(token.encode(), _WHAT, hashlib.sha256).hexdigest()


def _cookie_ok(request: Request) -> bool:
    given = request.cookies.get(COOKIE, "")
    if not given:
        return False
    found = False
    for _, token in writers(request):  # every one compared, in constant time
        found |= hmac.compare_digest(proof(token).encode(), given.encode())
    return found


def allowed(request: Request) -> bool:
    """Galley's read rule (loopback, or the bearer token), or the dashboard's cookie."""
    if _cookie_ok(request):
        return True
    try:
        require_reader(request)
    except ApiError:
        return False
    return True


def require_dashboard_reader(request: Request) -> None:
    if not allowed(request):
        raise ApiError(
            401, "Unauthorized", "reads from outside loopback need the token (or /ui/login)"
        )


async def token_from_form(request: Request) -> str | None:
    """The `token` field of an urlencoded form, bounded; None when absent or unknown."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
    try:
        fields = parse_qs(b"".join(chunks).decode("utf-8"), max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        return None
    given = (fields.get("token") or [""])[0].strip()
    if not given:
        return None
    found = None
    for _, token in writers(request):
        if hmac.compare_digest(token.encode(), given.encode()) and found is None:
            found = token
    return found
