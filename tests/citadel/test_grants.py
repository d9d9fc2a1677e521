"""The ReferenceGrants Citadel holds: the map SDS asks (fail closed while unknown), and the
watch that fills it from Galley's config in a real Consul, written the way Galley writes
it (`api.store.ConfigStore`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import consul
import pytest

from api.store import ConfigStore, Write, key_for
from citadel.grants import PREFIX, GrantMap, GrantWatch
from citadel.metrics import CitadelMetrics
from meshctl.procs import ConsulPorts, Supervisor, bin_path, free_port
from tests.citadel.sds_fakes import grant
from tests.e2e.harness import eventually


async def until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Poll what the watch exposes no event for (the map after a change, metrics)."""
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def watching(addr: str, wait: str = "2s") -> AsyncIterator[tuple[GrantMap, CitadelMetrics]]:
    view, metrics = GrantMap(), CitadelMetrics()
    watch = GrantWatch(addr, view, metrics, wait=wait, retry_max=0.5)
    task = asyncio.create_task(watch.run())
    try:
        yield view, metrics
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watch.close()


@pytest.fixture
def ns() -> str:
    return "g" + secrets.token_hex(4)


def test_unknown_grants_allow_nothing_and_a_change_wakes_the_watchers() -> None:
    view = GrantMap()
    woken = asyncio.Event()
    view.watch(woken)
    assert not view.known and not view.allows("shop", "certs", "web")
    assert not view.replace(None)  # no change: nobody woken
    assert not woken.is_set()
    assert view.replace([grant("certs", "shop", "web")])
    assert woken.is_set() and view.allows("shop", "certs", "web")
    assert not view.allows("shop", "certs", "other") and not view.allows("cart", "certs", "web")
    assert view.allows("certs", "certs", "anything")  # its own namespace
    woken.clear()
    assert not view.replace([grant("certs", "shop", "web")])  # the same grants
    assert not woken.is_set()
    assert view.replace(None)
    assert woken.is_set() and not view.allows("shop", "certs", "web")
    view.unwatch(woken)


async def test_the_watch_follows_grants_written_by_galleys_store(
    consul_agent: str, ns: str
) -> None:
    config = ConfigStore(consul_agent)
    try:
        async with watching(consul_agent) as (view, metrics):
            await until(lambda: view.known, "the first read")
            assert not view.allows(ns, "certs" + ns, "web")
            (stored,) = await config.write([Write(grant("certs" + ns, ns, "web"), None)])
            await until(lambda: view.allows(ns, "certs" + ns, "web"), "the grant")
            assert not view.allows(ns, "certs" + ns, "other")
            await config.delete(stored.resource.kind_id, "certs" + ns, stored.resource.name)
            await until(lambda: not view.allows(ns, "certs" + ns, "web"), "the deletion")
            assert metrics.grants_invalid._value.get() == 0
    finally:
        await config.close()


async def test_a_bad_value_is_no_grant(
    consul_agent: str, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    kv = _kv(consul_agent).kv
    config = ConfigStore(consul_agent)
    try:
        (stored,) = await config.write([Write(grant("certs" + ns, ns, "web"), None)])
        good = key_for(stored.resource.kind_id, "certs" + ns, stored.resource.name)
        _, item = kv.get(good)
        # Copied to another namespace's key (it would grant there what certs granted)...
        kv.put(f"{PREFIX}other{ns}/gateways", item["Value"])
        # ...or not a ReferenceGrant at all.
        kv.put(f"{PREFIX}junk{ns}/x", "not json")
        kv.put(f"{PREFIX}junk{ns}/y", '{"kind": "ReferenceGrant", "spec": {}}')
        async with watching(consul_agent) as (view, metrics):
            await until(lambda: metrics.grants_invalid._value.get() >= 3, "three refusals")
            assert view.allows(ns, "certs" + ns, "web")
            assert not view.allows(ns, "other" + ns, "web")
        assert f"{PREFIX}other{ns}/gateways" in caplog.text and "Traceback" not in caplog.text
    finally:
        kv.delete(f"{PREFIX}other{ns}/", recurse=True)
        kv.delete(f"{PREFIX}junk{ns}/", recurse=True)
        await config.delete(stored.resource.kind_id, "certs" + ns, stored.resource.name)
        await config.close()


async def test_an_unreachable_consul_grants_nothing() -> None:
    async with watching(f"127.0.0.1:{free_port()}") as (view, metrics):
        await until(lambda: metrics.grant_watch_errors._value.get() >= 2, "the watch to retry")
        assert not view.known and not view.allows("shop", "certs", "web")


async def test_grants_are_dropped_while_consul_is_away_and_read_again_after(
    tmp_path: Path,
) -> None:
    """A real Consul stopped and started on its data: no grant is in force meanwhile, and
    the unchanged grants are in force again as soon as it answers."""
    sup = Supervisor(tmp_path / "logs")
    ports = ConsulPorts()
    addr = f"127.0.0.1:{ports.http}"

    def start() -> None:
        sup.start("consul", ports.argv(bin_path("consul"), tmp_path / "consul-data"))
        sup.wait_http("consul", f"http://{addr}/v1/status/leader")
        eventually(lambda: _kv(addr).status.leader(), 30, what="consul has a leader")

    async def off_loop(fn: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, fn)

    config = ConfigStore(addr)
    try:
        await off_loop(start)
        await config.write([Write(grant("certs", "shop", "web"), None)])
        async with watching(addr, wait="30s") as (view, metrics):
            await until(lambda: view.allows("shop", "certs", "web"), "the grant")
            await off_loop(lambda: sup.stop("consul"))
            await until(lambda: not view.known, "the grants dropped")
            assert metrics.grant_watch_errors._value.get() >= 1
            await off_loop(start)
            await until(lambda: view.allows("shop", "certs", "web"), "the grant again", 20)
    finally:
        await config.close()
        sup.stop_all()


def _kv(addr: str) -> consul.Consul:
    host, _, port = addr.rpartition(":")
    return consul.Consul(host=host, port=int(port))
