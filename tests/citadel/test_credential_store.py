"""Gateway credentials in a real Consul: sealed writes, the watch that feeds SDS, and what
happens when a stored value is bad or Consul goes away."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import consul
import pytest

from citadel.credential_store import PREFIX, CredentialStore, key_for
from citadel.credentials import CredentialMap, credential_from_document
from citadel.metrics import CitadelMetrics
from citadel.sealing import KEY_FILE, Sealer
from meshctl.procs import ConsulPorts, Supervisor, bin_path, free_port
from tests.citadel.helpers import key_body, make_ca, make_server, tls_doc
from tests.e2e.harness import eventually

CA = make_ca()
SERVER = make_server(CA)


def _kv(addr: str) -> consul.Consul:
    host, _, port = addr.rpartition(":")
    return consul.Consul(host=host, port=int(port))


async def until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Poll a condition the code under test exposes no event for (metrics, the map)."""
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def running(
    addr: str, key_dir: Path, wait: str = "2s"
) -> AsyncIterator[tuple[CredentialStore, CredentialMap, CitadelMetrics]]:
    """A store with its watch running; the watch is stopped and the client closed after."""
    view, metrics = CredentialMap(), CitadelMetrics()
    store = CredentialStore(
        addr, Sealer.load_or_create(key_dir / KEY_FILE), view, metrics, wait=wait, retry_max=0.5
    )
    task = asyncio.create_task(store.run())
    try:
        yield store, view, metrics
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


@pytest.fixture
def ns() -> str:
    return "t" + secrets.token_hex(4)


async def test_put_list_delete_and_the_watch_follows(
    consul_agent: str, tmp_path: Path, ns: str
) -> None:
    async with running(consul_agent, tmp_path) as (store, view, metrics):
        await asyncio.wait_for(store.synced.wait(), 10)
        woken = asyncio.Event()
        view.watch(ns, woken)
        created, stored = await store.put(credential_from_document(ns, "web", tls_doc(SERVER)))
        assert created and stored.revision
        await asyncio.wait_for(woken.wait(), 10)
        held = view.get(ns, "web")
        assert held is not None and held.cert_chain_pem == SERVER.cert_pem.encode()
        assert held.revision == stored.revision

        # At rest: sealed, bound to its name, nothing of the key in clear.
        _, item = _kv(consul_agent).kv.get(key_for(ns, "web"))
        envelope = json.loads(item["Value"])
        assert envelope["v"] == 1 and envelope["alg"] == "AES-256-GCM"
        assert key_body(SERVER.key_pem) not in item["Value"].decode()
        assert b"BEGIN" not in base64.b64decode(envelope["ciphertext"])

        woken.clear()
        renewed = make_server(CA)
        created, again = await store.put(credential_from_document(ns, "web", tls_doc(renewed)))
        assert not created and again.revision != stored.revision
        await asyncio.wait_for(woken.wait(), 10)
        assert view.get(ns, "web").cert_chain_pem == renewed.cert_pem.encode()  # type: ignore[union-attr]

        await store.put(
            credential_from_document(ns, "web-cacert", {"type": "generic", "caCert": CA.cert_pem})
        )
        listed = await store.entries(ns)
        assert [(e.name, e.credential.type) for e in listed if e.credential] == [
            ("web", "tls"),
            ("web-cacert", "generic"),
        ]

        woken.clear()
        assert await store.delete(ns, "web")
        assert not await store.delete(ns, "web")
        await asyncio.wait_for(woken.wait(), 10)
        assert view.get(ns, "web") is None and view.get(ns, "web-cacert") is not None
        assert metrics.credentials_invalid._value.get() == 0


async def test_bad_values_are_logged_by_name_and_left_out(
    consul_agent: str, tmp_path: Path, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    kv = _kv(consul_agent).kv
    async with running(consul_agent, tmp_path) as (store, view, metrics):
        await store.put(credential_from_document(ns, "good", tls_doc(SERVER)))
        # Someone with KV write access copies the sealed value to another name...
        _, item = kv.get(key_for(ns, "good"))
        kv.put(key_for(ns, "copied"), item["Value"])
        kv.put(key_for("other" + ns, "good"), item["Value"])
        # ...or writes garbage, or a value sealed by another Citadel's key.
        kv.put(key_for(ns, "garbage"), "not an envelope")
        foreign = Sealer.load_or_create(tmp_path / "other-key")
        kv.put(key_for(ns, "foreign"), foreign.seal(f"{ns}/foreign", b"{}"))
        kv.put(f"{PREFIX}{ns}/Bad_Name", "x")
        await until(lambda: metrics.credentials_invalid._value.get() >= 5, "five refusals")
        assert view.get(ns, "good") is not None
        for name in ("copied", "garbage", "foreign"):
            assert view.get(ns, name) is None
        assert view.get("other" + ns, "good") is None
        listed = {e.name: e for e in await store.entries(ns)}
        assert listed["good"].credential is not None
        assert listed["copied"].credential is None and "moved" in listed["copied"].problem
        assert "another key" in listed["foreign"].problem
    assert f"{ns}/copied" in caplog.text and f"{ns}/garbage" in caplog.text
    assert key_body(SERVER.key_pem) not in caplog.text
    assert "Traceback" not in caplog.text
    kv.delete(f"{PREFIX}{ns}/", recurse=True)
    kv.delete(f"{PREFIX}other{ns}/", recurse=True)


async def test_an_unreachable_consul_keeps_the_last_map(tmp_path: Path) -> None:
    async with running(f"127.0.0.1:{free_port()}", tmp_path) as (store, view, metrics):
        view.put(credential_from_document("shop", "web", tls_doc(SERVER)))
        await until(lambda: metrics.credential_watch_errors._value.get() >= 2, "the watch to retry")
        assert view.get("shop", "web") is not None and not store.synced.is_set()


async def test_the_watch_survives_a_consul_restart(tmp_path: Path) -> None:
    """A real Consul, stopped and started again on its data: the map is kept meanwhile
    and the watch resumes, seeing changes made after the restart."""
    sup = Supervisor(tmp_path / "logs")
    ports = ConsulPorts()
    addr = f"127.0.0.1:{ports.http}"

    def start() -> None:
        sup.start("consul", ports.argv(bin_path("consul"), tmp_path / "consul-data"))
        sup.wait_http("consul", f"http://{addr}/v1/status/leader")
        eventually(lambda: _kv(addr).status.leader(), 30, what="consul has a leader")

    async def off_loop(fn: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, fn)

    try:
        await off_loop(start)
        async with running(addr, tmp_path, wait="1s") as (store, view, metrics):
            await store.put(credential_from_document("shop", "web", tls_doc(SERVER)))
            await until(lambda: view.get("shop", "web") is not None, "the credential")
            await off_loop(lambda: sup.stop("consul"))
            await until(lambda: metrics.credential_watch_errors._value.get() >= 1, "an error")
            assert view.get("shop", "web") is not None  # kept while Consul is away
            await off_loop(start)
            await _retry(lambda: store.delete("shop", "web"))
            await until(lambda: view.get("shop", "web") is None, "the deletion", within=20)
    finally:
        sup.stop_all()


async def _retry(op: Callable[[], Awaitable[bool]], attempts: int = 20) -> None:
    """Right after a restart Consul may still be electing itself leader."""
    for _ in range(attempts):
        try:
            await op()
            return
        except Exception:
            await asyncio.sleep(0.5)
    await op()
