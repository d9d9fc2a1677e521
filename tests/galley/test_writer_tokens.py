"""Named write tokens: the token file's NAME:TOKEN lines, and a bare token as "admin"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from galley.dependencies import ADMIN, parse_tokens
from galley.main import create_app
from galley.settings import GalleySettings


def test_token_file_lines() -> None:
    text = "# who may write\nalice:tok-a\n\n  bob:tok:with:colons  \nbare-token\n:x\nbad name:y\n"
    assert parse_tokens(text) == [
        ("alice", "tok-a"),
        ("bob", "tok:with:colons"),
        (ADMIN, "bare-token"),
        (ADMIN, ":x"),  # no name before ':': a bare token, as before
        (ADMIN, "bad name:y"),
    ]
    assert parse_tokens("just-one-token\n") == [(ADMIN, "just-one-token")]
    assert parse_tokens("\n# nothing\n") == []


def _status(settings: GalleySettings, token: str | None) -> int:
    """The status of a write that only gets past the token check to a 404 (no such type)."""
    headers: dict[str, Any] = {"Authorization": f"Bearer {token}"} if token else {}
    with TestClient(create_app(settings)) as c:
        r = c.delete("/apis/networking.istio.io/v1/namespaces/d/frobs/x", headers=headers)
        return r.status_code


@pytest.mark.parametrize(
    ("token", "status"),
    [("tok-a", 404), ("bare-token", 404), ("tok-", 401), ("alice:tok-a", 401), (None, 401)],
)
def test_any_listed_token_writes(tmp_path: Path, token: str | None, status: int) -> None:
    path = tmp_path / "tokens"
    path.write_text("alice:tok-a\nbare-token\n")
    settings = GalleySettings(consul_addr="127.0.0.1:1", token_file=str(path))
    assert _status(settings, token) == status


def test_no_token_and_unreadable_token_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n")
    assert _status(GalleySettings(consul_addr="127.0.0.1:1", token_file=str(empty)), "x") == 403
    gone = GalleySettings(consul_addr="127.0.0.1:1", token_file=str(tmp_path / "missing"))
    assert _status(gone, "x") == 503
    # The plain `token` setting still works, as the writer "admin".
    assert _status(GalleySettings(consul_addr="127.0.0.1:1", token="t"), "t") == 404
