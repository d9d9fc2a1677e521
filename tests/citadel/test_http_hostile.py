"""Citadel's HTTP API under hostile input (marker: hostile).

Token minting takes names that end up in SPIFFE IDs: every class of odd
identifier must be refused with 400, every malformed body too, and nothing
may answer 5xx. Each body below once answered 500 (RecursionError from deep
nesting, OverflowError from 1e400, AttributeError on a non-object) or was
coerced into a name (a list became "['a']").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citadel.ca import CertificateAuthority
from citadel.http import CitadelHttp
from citadel.metrics import CitadelMetrics
from citadel.tokens import TokenSigner

pytestmark = pytest.mark.hostile

ADMIN = "admin-credential"
ODD_NAMES = [
    "x\n",
    "\nx",
    "x\r",
    "x\x00y",
    "x\ty",
    "x y",
    "x/y",
    "x..y",
    "..",
    "X",
    "café",
    "x\u200by",
    "\uff58",  # a full-width x
    "-x",
    "x-",
    "a" * 64,
    "",
    "x%0A",
    "x\\y",
]


@pytest.fixture
async def citadel(tmp_path: Path) -> AsyncIterator[str]:
    ca = CertificateAuthority.load_or_create(tmp_path, "cluster.local")
    signer = TokenSigner.load_or_create(tmp_path / "token-signing.pem")
    http = CitadelHttp(ca, signer, CitadelMetrics(), lambda: ADMIN)
    port = await http.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await http.stop()


async def _mint(base: str, body: bytes, token: str = ADMIN) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{base}/v1/tokens",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text.startswith("{") else text


def _req(namespace: object = "default", account: object = "web", **extra: object) -> bytes:
    return json.dumps({"namespace": namespace, "serviceAccount": account, **extra}).encode()


async def test_a_plain_request_mints(citadel: str) -> None:
    status, body = await _mint(citadel, _req(ttlSeconds=600))
    assert status == 200 and body["token"].startswith("v1."), body


@pytest.mark.parametrize("name", ODD_NAMES)
async def test_odd_identifiers_are_refused(citadel: str, name: str) -> None:
    for body in (_req(namespace=name), _req(account=name)):
        status, answer = await _mint(citadel, body)
        assert status == 400, (name, answer)
        assert "token" not in answer


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"namespace": ' * 3_000 + b"1" + b"}" * 3_000,
        _req(ttlSeconds=1e400),
        _req(ttlSeconds=10**40),
        _req(ttlSeconds=-1),
        _req(ttlSeconds=True),
        _req(ttlSeconds="600"),
        _req(namespace=["default"]),
        _req(account={"a": 1}),
        _req(namespace=None),
        _req(extra="field"),
        b"[]",
        b'"default"',
        b"null",
        b"\xff\xfe",
        b"",
        b'{"namespace": "a", "namespace": "b", "serviceAccount": "web"}',
    ],
)
async def test_malformed_bodies_are_refused(citadel: str, body: bytes) -> None:
    status, answer = await _mint(citadel, body)
    assert status == 400, answer
    assert "token" not in answer


async def test_oversized_and_unauthenticated_requests(citadel: str) -> None:
    assert (await _mint(citadel, b"{" + b" " * 100_000 + b"}"))[0] == 413
    assert (await _mint(citadel, _req(), token="wrong"))[0] == 401
    async with aiohttp.ClientSession() as s:
        for path in ("/v1/tokens/%0A", "/v1/roots/..%2f..", "/%00", "/v1/" + "x" * 5000):
            async with s.get(citadel + path) as resp:
                assert resp.status in (404, 405, 414, 431), (path, resp.status)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    namespace=st.text(max_size=70) | st.integers() | st.none(),
    account=st.text(max_size=70) | st.lists(st.text(max_size=3), max_size=2),
    ttl=st.integers() | st.floats() | st.text(max_size=5),
)
async def test_any_request_gets_a_token_or_a_400(
    citadel: str, namespace: object, account: object, ttl: object
) -> None:
    try:
        body = _req(namespace, account, ttlSeconds=ttl)
    except ValueError:  # NaN and infinities are not JSON; json.dumps still writes them
        return
    status, answer = await _mint(citadel, body)
    assert status in (200, 400), (status, answer)
