"""Citadel wired together, in process: with --consul-addr a credential written over HTTP
reaches the map SDS reads, and a ReferenceGrant Galley stores the grants SDS asks;
without it the API says credentials are off; both shut down cleanly when cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from api.store import ConfigStore, Write
from citadel.app import Citadel
from citadel.sealing import KEY_FILE
from citadel.settings import CitadelSettings
from meshctl.procs import free_port
from tests.citadel.helpers import make_ca, make_server, tls_doc
from tests.citadel.sds_fakes import grant

ADMIN = "app-admin"


@contextlib.asynccontextmanager
async def running(settings: CitadelSettings) -> AsyncIterator[Citadel]:
    citadel = Citadel(settings)
    started = asyncio.Event()
    task = asyncio.create_task(citadel.run(started))
    try:
        await asyncio.wait_for(started.wait(), 10)
        yield citadel
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    assert task.done()


def _settings(tmp_path: Path, consul: str | None) -> CitadelSettings:
    return CitadelSettings(
        state_dir=str(tmp_path / "state"),
        sds_addr="127.0.0.1:0",
        sds_tls_addr=None,
        http_addr="127.0.0.1:0",
        admin_token=ADMIN,  # type: ignore[arg-type]
        consul_addr=consul,
    )


async def _put(citadel: Citadel, path: str, doc: object) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as s,
        s.put(
            f"http://127.0.0.1:{citadel.http_port}{path}",
            data=json.dumps(doc),
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_with_consul_a_put_reaches_the_sds_map(consul_agent: str, tmp_path: Path) -> None:
    ns = "a" + secrets.token_hex(4)
    server = make_server(make_ca())
    async with running(_settings(tmp_path, consul_agent)) as citadel:
        key = tmp_path / "state" / KEY_FILE
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        status, _ = await _put(citadel, f"/v1/secrets/{ns}/web", tls_doc(server))
        assert status == 201
        for _ in range(200):
            if citadel.credentials.get(ns, "web") is not None:
                break
            await asyncio.sleep(0.05)
        held = citadel.credentials.get(ns, "web")
        assert held is not None and held.cert_chain_pem == server.cert_pem.encode()
        assert citadel.store is not None
        assert await citadel.store.delete(ns, "web")


async def test_with_consul_a_stored_grant_reaches_the_map_sds_asks(
    consul_agent: str, tmp_path: Path
) -> None:
    ns = "a" + secrets.token_hex(4)
    config = ConfigStore(consul_agent)
    try:
        async with running(_settings(tmp_path, consul_agent)) as citadel:
            (stored,) = await config.write([Write(grant("certs" + ns, ns, "web"), None)])
            for _ in range(200):
                if citadel.grants.allows(ns, "certs" + ns, "web"):
                    break
                await asyncio.sleep(0.05)
            assert citadel.grants.allows(ns, "certs" + ns, "web")
            await config.delete(stored.resource.kind_id, "certs" + ns, stored.resource.name)
    finally:
        await config.close()


async def test_without_consul_credentials_are_off(tmp_path: Path) -> None:
    async with running(_settings(tmp_path, None)) as citadel:
        status, body = await _put(citadel, "/v1/secrets/shop/web", {"type": "tls"})
        assert status == 503 and "--consul-addr" in str(body["error"])
        assert citadel.store is None
        assert citadel.grant_watch is None and not citadel.grants.known  # none in force
    assert not (tmp_path / "state" / KEY_FILE).exists()  # no key made for nothing


async def test_an_unreachable_consul_does_not_stop_citadel(tmp_path: Path) -> None:
    async with running(_settings(tmp_path, f"127.0.0.1:{free_port()}")) as citadel:
        status, body = await _put(citadel, "/v1/secrets/shop/web", tls_doc(make_server(make_ca())))
        assert status == 503 and "consul" in str(body["error"])
