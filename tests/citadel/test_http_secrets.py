"""Citadel's gateway credential API over HTTP, against a real Consul: admin only, strict
bodies refused field by field, and no key material in any answer or log line."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citadel.ca import CertificateAuthority
from citadel.credential_store import CredentialStore
from citadel.credentials import CredentialMap
from citadel.http import CitadelHttp
from citadel.metrics import CitadelMetrics
from citadel.sealing import KEY_FILE, Sealer
from citadel.tokens import TokenSigner
from tests.citadel.helpers import DAY, NOW, key_body, make_ca, make_server, tls_doc

ADMIN = "admin-credential"
CA = make_ca()
SERVER = make_server(CA)
OTHER = make_server(CA, "other.example.com")


class Api:
    def __init__(self, base: str, metrics: CitadelMetrics) -> None:
        self.base, self.metrics = base, metrics

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = ADMIN
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
        async with (
            aiohttp.ClientSession() as s,
            s.request(method, self.base + path, data=data, headers=headers) as resp,
        ):
            text = await resp.text()
            for key in (SERVER.key_pem, OTHER.key_pem):
                assert key_body(key) not in text, "an answer carried key material"
            return resp.status, json.loads(text) if text.startswith("{") else text


async def _serve(tmp_path: Path, store: CredentialStore | None) -> AsyncIterator[Api]:
    ca = CertificateAuthority.load_or_create(tmp_path, "cluster.local")
    signer = TokenSigner.load_or_create(tmp_path / "token-key.pem")
    metrics = CitadelMetrics()
    http = CitadelHttp(ca, signer, metrics, lambda: ADMIN, store)
    port = await http.start("127.0.0.1", 0)
    try:
        yield Api(f"http://127.0.0.1:{port}", metrics)
    finally:
        await http.stop()
        if store is not None:
            await store.close()


@pytest.fixture
async def api(consul_agent: str, tmp_path: Path) -> AsyncIterator[Api]:
    sealer = Sealer.load_or_create(tmp_path / KEY_FILE)
    store = CredentialStore(consul_agent, sealer, CredentialMap(), CitadelMetrics())
    async for served in _serve(tmp_path, store):
        yield served


@pytest.fixture
async def off(tmp_path: Path) -> AsyncIterator[Api]:
    async for served in _serve(tmp_path, None):
        yield served


@pytest.fixture
def ns() -> str:
    return "h" + secrets.token_hex(4)


async def test_create_replace_list_delete(api: Api, ns: str) -> None:
    status, body = await api.call("PUT", f"/v1/secrets/{ns}/web", tls_doc(SERVER, CA))
    assert status == 201, body
    assert body == {
        "namespace": ns,
        "name": "web",
        "type": "tls",
        "notAfter": SERVER.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    status, body = await api.call("PUT", f"/v1/secrets/{ns}/web", tls_doc(OTHER))
    assert status == 200 and body["name"] == "web"
    status, body = await api.call(
        "PUT", f"/v1/secrets/{ns}/web-cacert", {"type": "generic", "caCert": CA.cert_pem}
    )
    assert status == 201 and body["type"] == "generic"
    status, body = await api.call("GET", f"/v1/secrets/{ns}")
    assert status == 200
    assert body["namespace"] == ns
    assert [(s["name"], s["type"]) for s in body["secrets"]] == [
        ("web", "tls"),
        ("web-cacert", "generic"),
    ]
    assert all(set(s) == {"name", "type", "notAfter"} for s in body["secrets"])
    assert (await api.call("DELETE", f"/v1/secrets/{ns}/web"))[0] == 200
    assert (await api.call("DELETE", f"/v1/secrets/{ns}/web"))[0] == 404
    assert (await api.call("DELETE", f"/v1/secrets/{ns}/web-cacert"))[0] == 200
    assert (await api.call("GET", f"/v1/secrets/{ns}"))[1]["secrets"] == []


async def test_expired_is_accepted_with_a_warning(api: Api, ns: str) -> None:
    old = make_server(CA, not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    status, body = await api.call("PUT", f"/v1/secrets/{ns}/old", tls_doc(old))
    assert status == 201 and any("expired" in w for w in body["warnings"])
    await api.call("DELETE", f"/v1/secrets/{ns}/old")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/secrets/shop/web", tls_doc(SERVER)),
        ("GET", "/v1/secrets/shop", None),
        ("DELETE", "/v1/secrets/shop/web", None),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong", ADMIN + "x"])
async def test_admin_only(api: Api, method: str, path: str, body: Any, token: str | None) -> None:
    status, answer = await api.call(method, path, body, token=token)
    assert status == 401 and "admin credential" in answer["error"]
    assert api.metrics.auth_failures.labels("admin")._value.get() == 1


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/secrets/Shop/web", tls_doc(SERVER), "namespace"),
        ("/v1/secrets/shop/Web", tls_doc(SERVER), "name"),
        ("/v1/secrets/shop/a..b", tls_doc(SERVER), "name"),
        ("/v1/secrets/shop/web", b"not json", "body"),
        ("/v1/secrets/shop/web", b"\xff\xfe", "body"),
        ("/v1/secrets/shop/web", b"[]", "body"),
        ("/v1/secrets/shop/web", b'{"type": "tls", "type": "tls"}', "body"),
        ("/v1/secrets/shop/web", {"cert": SERVER.cert_pem}, "type"),
        ("/v1/secrets/shop/web", {**tls_doc(SERVER), "type": True}, "type"),
        ("/v1/secrets/shop/web", {**tls_doc(SERVER), "password": "x"}, "password"),
        ("/v1/secrets/shop/web", {"type": "tls", "cert": SERVER.cert_pem}, "key"),
        ("/v1/secrets/shop/web", {**tls_doc(SERVER), "cert": ["x"]}, "cert"),
        ("/v1/secrets/shop/web", {**tls_doc(SERVER), "cert": "junk"}, "cert"),
        ("/v1/secrets/shop/web", {**tls_doc(SERVER), "key": 1}, "key"),
        ("/v1/secrets/shop/web", {**tls_doc(SERVER), "key": OTHER.key_pem}, "key"),
        ("/v1/secrets/shop/web", {**tls_doc(SERVER), "caCert": "junk"}, "caCert"),
        ("/v1/secrets/shop/web", {"type": "generic"}, "caCert"),
        ("/v1/secrets/shop/web", {"type": "generic", "caCert": CA.cert_pem, "key": "k"}, "key"),
    ],
)
async def test_bad_requests_name_the_field(api: Api, path: str, body: Any, field: str) -> None:
    status, answer = await api.call("PUT", path, body)
    assert status == 400, answer
    assert answer["field"] == field and field in answer["error"]


async def test_bad_names_in_list_and_delete(api: Api) -> None:
    assert (await api.call("GET", "/v1/secrets/Not_A_Label"))[1]["field"] == "namespace"
    assert (await api.call("DELETE", "/v1/secrets/shop/Bad_Name"))[1]["field"] == "name"


async def test_oversized_bodies_are_refused(api: Api) -> None:
    status, _ = await api.call("PUT", "/v1/secrets/shop/web", b"{" + b" " * 70_000 + b"}")
    assert status == 413


async def test_without_consul_credentials_are_off(off: Api) -> None:
    for method, path, body in (
        ("PUT", "/v1/secrets/shop/web", tls_doc(SERVER)),
        ("GET", "/v1/secrets/shop", None),
        ("DELETE", "/v1/secrets/shop/web", None),
    ):
        status, answer = await off.call(method, path, body)
        assert status == 503 and "--consul-addr" in answer["error"]
    assert (await off.call("GET", "/v1/secrets/shop", token=None))[0] == 401


async def test_no_key_material_in_logs(api: Api, ns: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await api.call("PUT", f"/v1/secrets/{ns}/web", tls_doc(SERVER, CA))
    await api.call("PUT", f"/v1/secrets/{ns}/web", {**tls_doc(SERVER), "key": OTHER.key_pem})
    await api.call("PUT", f"/v1/secrets/{ns}/web", {**tls_doc(SERVER), "cert": SERVER.key_pem})
    await api.call("GET", f"/v1/secrets/{ns}")
    await api.call("DELETE", f"/v1/secrets/{ns}/web")
    assert f"{ns}/web" in caplog.text
    for key in (SERVER.key_pem, OTHER.key_pem):
        assert key_body(key) not in caplog.text


async def test_tokens_take_a_strict_gateway_flag(api: Api) -> None:
    base = {"namespace": "istio-system", "serviceAccount": "ingressgateway"}
    for gateway, expected in ((True, 200), (False, 200), ("yes", 400), (1, 400), (None, 400)):
        status, _ = await api.call("POST", "/v1/tokens", {**base, "gateway": gateway})
        assert status == expected, gateway


_pem_ish = st.sampled_from([SERVER.cert_pem, SERVER.key_pem, CA.cert_pem, OTHER.key_pem, ""])
_values = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | _pem_ish
_bodies = st.dictionaries(
    st.sampled_from(["type", "cert", "key", "caCert", "extra"]) | st.text(max_size=5),
    st.sampled_from(["tls", "generic"]) | _values | st.lists(_values, max_size=2),
    max_size=5,
)


@pytest.mark.hostile
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_bodies | st.binary(max_size=50))
async def test_any_body_is_stored_or_refused_never_a_5xx(api: Api, body: Any) -> None:
    status, answer = await api.call("PUT", "/v1/secrets/fuzz/web", body)
    assert status in (200, 201, 400), (status, answer)
    if status == 400:
        assert "field" in answer and answer["error"].startswith("bad request: ")
