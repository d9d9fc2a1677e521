"""The Docker registrator: SERVICE_* labels/env to registrations, and the loop against a
fake Docker Engine API (a unix socket) and the real Consul."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import consul
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.catalog import registration_payload
from meshctl.procs import free_port
from meshctl.registration import register
from meshctl.registrator import (
    Port,
    Registrator,
    RegistratorSettings,
    container_ports,
    main,
    owner_prefix,
    plan_container,
    service_settings,
)
from tests.e2e.harness import eventually

T = TypeVar("T")

# The labels docker-compose.yml gives an app container (its sidecar listens on 15006).
COMPOSE_LABELS = {
    "SERVICE_15006_NAME": "details",
    "SERVICE_15006_TAGS": (
        "version=v1,app=details,namespace=default,service_account=shop-details,"
        "service_port=9080,tls_mode=istio"
    ),
    "SERVICE_NAMESPACE": "default",
    "SERVICE_SERVICE_ACCOUNT": "shop-details",
    "SERVICE_SERVICE_PORT": "9080",
    "SERVICE_TLS_MODE": "istio",
    "SERVICE_15006_CHECK_HTTP": "/healthz",
}


def container(
    name: str,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    *,
    ip: str = "172.18.0.7",
    exposed: tuple[str, ...] = ("15006/tcp",),
    running: bool = True,
    cid: str | None = None,
) -> dict[str, Any]:
    """A Docker inspect document, as much of it as the registrator reads."""
    return {
        "Id": cid or uuid.uuid4().hex * 2,
        "Name": f"/{name}",
        "State": {"Running": running, "Status": "running" if running else "exited"},
        "Config": {
            "Env": [f"{k}={v}" for k, v in (env or {}).items()] + ["PATH=/usr/bin"],
            "Labels": labels or {},
            "ExposedPorts": {p: {} for p in exposed},
        },
        "NetworkSettings": {
            "IPAddress": "",
            "Ports": {p: None for p in exposed},
            "Networks": {"meshpy_default": {"IPAddress": ip}} if ip else {},
        },
    }


def details_payload(service_id: str, ip: str) -> dict[str, Any]:
    """What `meshctl register` writes for the compose details-v1 container."""
    return registration_payload(
        service="details",
        instance_id=service_id,
        address=ip,
        port=15006,
        namespace="default",
        service_account="shop-details",
        service_port=9080,
        labels={"version": "v1", "app": "details"},
        check_http=f"http://{ip}:15006/healthz",
        check_interval="10s",
        mtls=True,
    )


# --- The mapping ----------------------------------------------------------------------------


def test_compose_labels_give_what_meshctl_register_writes() -> None:
    plan = plan_container(container("meshpy-details-v1-1", COMPOSE_LABELS), "host1")
    sid = "registrator:host1:meshpy-details-v1-1:15006"
    assert plan.problems == []
    assert plan.registrations == {sid: details_payload(sid, "172.18.0.7")}


def test_env_works_alone_and_labels_win_over_env() -> None:
    env = {"SERVICE_NAME": "web", "SERVICE_VERSION": "v1", "SERVICE_NAMESPACE": "shop"}
    alone = plan_container(container("web-1", env=env, exposed=("8080/tcp",)), "h")
    body = alone.registrations["registrator:h:web-1:8080"]
    assert (body["Name"], body["Meta"]["namespace"], body["Tags"]) == (
        "web",
        "shop",
        ["version=v1"],
    )
    both = container("web-1", labels={"SERVICE_VERSION": "v2"}, env=env, exposed=("8080/tcp",))
    assert service_settings(both)["SERVICE_VERSION"] == "v2"
    body = plan_container(both, "h").registrations["registrator:h:web-1:8080"]
    assert body["Meta"]["version"] == "v2" and body["Tags"] == ["version=v2"]


def test_attributes_are_lower_cased_and_win_over_tags_port_specific_over_general() -> None:
    labels = {
        "SERVICE_NAME": "api",
        "SERVICE_TAGS": "version=v1,plain,Team=core",
        "SERVICE_VERSION": "v2",
        "SERVICE_9000_VERSION": "v3",
        "SERVICE_SERVICE_ACCOUNT": "api-sa",
        "SERVICE_PROTOCOL": "TCP",
    }
    plan = plan_container(container("api-1", labels, exposed=("9000/tcp",)), "h")
    body = plan.registrations["registrator:h:api-1:9000"]
    # Plain tags have no place in the mesh shape; key=value tags keep their case.
    assert body["Tags"] == ["Team=core", "version=v3"]
    assert body["Meta"] == {
        "namespace": "default",
        "service_account": "api-sa",
        "service_port": "80",
        "version": "v3",
        "Team": "core",
        "protocol": "tcp",
    }
    assert "Check" not in body


def test_only_containers_that_opt_in_are_registered() -> None:
    stray = container("postgres", env={"SERVICE_ACCOUNT": "x"}, exposed=("5432/tcp",))
    assert plan_container(stray, "h").registrations == {}
    other_port = container("app", {"SERVICE_9999_NAME": "app"}, exposed=("8080/tcp",))
    assert plan_container(other_port, "h").registrations == {}


def test_ignore_and_several_ports() -> None:
    labels = {"SERVICE_NAME": "multi", "SERVICE_81_IGNORE": "true", "SERVICE_82_NAME": "admin"}
    c = container("m", labels, exposed=("80/tcp", "81/tcp", "82/tcp", "53/udp"))
    names = {sid: b["Name"] for sid, b in plan_container(c, "h").registrations.items()}
    # A shared SERVICE_NAME gets the port appended, as Registrator does; UDP is never mesh.
    assert names == {"registrator:h:m:80": "multi-80", "registrator:h:m:82": "admin"}
    ignored = container("m", {**labels, "SERVICE_IGNORE": "1"}, exposed=("80/tcp",))
    assert plan_container(ignored, "h").registrations == {}


def test_check_interval_timeout_and_deregister_after() -> None:
    labels = {
        "SERVICE_NAME": "web",
        "SERVICE_CHECK_HTTP": "health",
        "SERVICE_CHECK_INTERVAL": "3s",
        "SERVICE_CHECK_TIMEOUT": "2s",
        "SERVICE_CHECK_DEREGISTER_AFTER": "1m",
    }
    body = plan_container(container("w", labels, ip="10.0.0.5", exposed=("80/tcp",)), "h")
    check = body.registrations["registrator:h:w:80"]["Check"]
    assert check == {
        "HTTP": "http://10.0.0.5:80/health",
        "Interval": "3s",
        "Timeout": "2s",
        "DeregisterCriticalServiceAfter": "1m",
    }


def test_check_port_probes_the_app_round_a_strict_sidecar() -> None:
    labels = {
        "SERVICE_15006_NAME": "web",
        "SERVICE_15006_CHECK_HTTP": "/healthz",
        "SERVICE_15006_CHECK_PORT": "9080",
    }
    plan = plan_container(container("w", labels, ip="10.0.0.5", exposed=("15006/tcp",)), "h")
    body = plan.registrations["registrator:h:w:15006"]
    assert body["Port"] == 15006  # the sidecar is what is registered
    assert body["Check"]["HTTP"] == "http://10.0.0.5:9080/healthz"  # the app is what is probed


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({"SERVICE_NAME": "x", "SERVICE_CHECK_HTTP": "/", "SERVICE_CHECK_PORT": "0"}, "check_port"),
        ({"SERVICE_NAME": "Bad_Name"}, "must be a DNS label"),
        ({"SERVICE_NAME": "x", "SERVICE_NAMESPACE": "No!"}, "namespace"),
        ({"SERVICE_NAME": "x", "SERVICE_SERVICE_PORT": "http"}, "service_port"),
        ({"SERVICE_NAME": "x", "SERVICE_SERVICE_PORT": "70000"}, "service port"),
        ({"SERVICE_NAME": "x", "SERVICE_TLS_MODE": "strict"}, "tls_mode"),
        ({"SERVICE_NAME": "x", "SERVICE_PROTOCOL": "udp"}, "protocol"),
        ({"SERVICE_NAME": "x", "SERVICE_CHECK_TCP": "true"}, "check_tcp"),
        ({"SERVICE_NAME": "x", "SERVICE_CHECK_HTTP": "/", "SERVICE_CHECK_INTERVAL": "often"}, ""),
        ({"SERVICE_NAME": "x", "SERVICE_TAGS": "a.b/c=1"}, "label 'a.b/c'"),
    ],
)
def test_an_invalid_workload_is_a_problem_not_a_registration(
    labels: dict[str, str], problem: str
) -> None:
    plan = plan_container(container("c", labels, exposed=("80/tcp",)), "h")
    assert plan.registrations == {}
    assert len(plan.problems) == 1 and problem in plan.problems[0]
    assert plan.problems[0].startswith("container c port 80: ")


def test_opted_in_without_a_network_or_port_is_one_problem() -> None:
    no_net = plan_container(container("c", {"SERVICE_NAME": "x"}, ip=""), "h")
    no_port = plan_container(container("c", {"SERVICE_NAME": "x"}, exposed=()), "h")
    for plan in (no_net, no_port):
        assert plan.registrations == {} and len(plan.problems) == 1


def test_published_ports_when_not_internal() -> None:
    c = container("c", {"SERVICE_NAME": "x"}, exposed=("80/tcp", "81/tcp", "82/tcp"))
    c["NetworkSettings"]["Ports"] = {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}],
        "81/tcp": [{"HostIp": "192.168.1.9", "HostPort": "32769"}],
        "82/tcp": None,
    }
    assert container_ports(c, internal=False) == [Port(81, "192.168.1.9", 32769)]
    assert container_ports(c, internal=False, host_ip="10.1.1.1") == [
        Port(80, "10.1.1.1", 32768),
        Port(81, "10.1.1.1", 32769),
    ]
    assert container_ports(c, internal=True) == [
        Port(80, "172.18.0.7", 80),
        Port(81, "172.18.0.7", 81),
        Port(82, "172.18.0.7", 82),
    ]


GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=st.fixed_dictionaries(
        {},
        optional={
            "Name": GARBAGE,
            "Config": st.fixed_dictionaries(
                {},
                optional={
                    "Env": st.lists(GARBAGE | st.sampled_from(["SERVICE_NAME=x", "SERVICE_"])),
                    "Labels": GARBAGE
                    | st.dictionaries(st.sampled_from(["SERVICE_NAME", "SERVICE_1_NAME"]), GARBAGE),
                    "ExposedPorts": GARBAGE
                    | st.dictionaries(
                        st.sampled_from(["1/tcp", "0/tcp", "99999/tcp", "x"]), GARBAGE
                    ),
                },
            ),
            "NetworkSettings": GARBAGE,
        },
    )
)
def test_garbage_from_docker_never_raises(doc: dict[str, Any]) -> None:
    for internal in (True, False):
        plan = plan_container(doc, "h", internal=internal)
        assert all(sid.startswith("registrator:h:") for sid in plan.registrations)


def test_flags_parse_like_the_other_services(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--consul-addr", "nohost"]) == 2
    assert "consul_addr" in capsys.readouterr().err
    assert main(["--node-name", "a:b"]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "--docker-socket" in capsys.readouterr().out


# --- The loop against a fake Docker and the real Consul -------------------------------------


class LoopThread:
    """An event loop in a thread: the fake Docker and the registrator run there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=15)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=15)
        self.loop.close()


class FakeDocker:
    """The Docker Engine API endpoints the registrator uses, on a unix socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.containers: dict[str, dict[str, Any]] = {}
        self.streams: list[asyncio.Queue[dict[str, Any] | None]] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/info", self._info)
        app.router.add_get("/containers/json", self._list)
        app.router.add_get("/containers/{id}/json", self._inspect)
        app.router.add_get("/events", self._events)
        self.runner = web.AppRunner(app, shutdown_timeout=1)
        await self.runner.setup()
        await web.UnixSite(self.runner, self.path).start()

    async def stop(self) -> None:
        for queue in self.streams:
            queue.put_nowait(None)
        if self.runner is not None:
            await self.runner.cleanup()

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"Name": "fake-docker-host"})

    async def _list(self, request: web.Request) -> web.Response:
        running = [c for c in self.containers.values() if c["State"]["Running"]]
        return web.json_response([{"Id": c["Id"], "Names": [c["Name"]]} for c in running])

    async def _inspect(self, request: web.Request) -> web.Response:
        found = self.containers.get(request.match_info["id"])
        if found is None:
            return web.json_response({"message": "No such container"}, status=404)
        return web.json_response(found)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        assert json.loads(request.query["filters"])["type"] == ["container"]
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.streams.append(queue)
        try:
            while (event := await queue.get()) is not None:
                await resp.write(json.dumps(event).encode() + b"\n")
        finally:
            self.streams.remove(queue)
        return resp

    def _publish(self, action: str, doc: dict[str, Any]) -> None:
        event = {
            "Type": "container",
            "Action": action,
            "Actor": {"ID": doc["Id"], "Attributes": {"name": doc["Name"].strip("/")}},
        }
        for queue in self.streams:
            queue.put_nowait(event)

    async def run(self, doc: dict[str, Any]) -> None:
        self.containers[doc["Id"]] = doc
        self._publish("start", doc)

    async def kill(self, doc: dict[str, Any]) -> None:
        doc["State"]["Running"] = False
        self._publish("die", doc)
        self._publish("stop", doc)


class TcpForward:
    """A TCP port that forwards to Consul once opened: a Consul that starts late."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.server: asyncio.Server | None = None

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._pipe_both, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _pipe_both(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


class Harness:
    def __init__(self, consul_addr: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="reg-")  # short: unix socket paths are limited
        self.socket = str(Path(self.dir) / "docker.sock")
        self.node = f"t{uuid.uuid4().hex[:8]}"
        host, port = consul_addr.rsplit(":", 1)
        self.consul = consul.Consul(host=host, port=int(port))
        self.consul_addr = consul_addr
        self.loop = LoopThread()
        self.docker = FakeDocker(self.socket)
        self.registrator: Registrator | None = None
        self.task: asyncio.Task[None] | None = None
        self.forward: TcpForward | None = None

    def start_docker(self) -> None:
        self.loop.call(self.docker.start())

    def start_registrator(self, resync: float = 0.3, consul_addr: str | None = None) -> Registrator:
        reg = Registrator(
            RegistratorSettings.model_validate(
                {
                    "consul_addr": consul_addr or self.consul_addr,
                    "docker_socket": self.socket,
                    "resync_seconds": resync,
                    "node_name": self.node,
                    "retry_max_seconds": 0.2,
                }
            )
        )

        async def start() -> asyncio.Task[None]:
            return asyncio.create_task(reg.run())

        self.registrator, self.task = reg, self.loop.call(start())
        return reg

    def services(self) -> dict[str, Any]:
        found: dict[str, Any] = self.consul.agent.services()
        return {k: v for k, v in found.items() if k.startswith(owner_prefix(self.node))}

    def close(self) -> None:
        async def stop() -> None:
            if self.task is not None:
                self.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task
            await self.docker.stop()
            if self.forward is not None:
                await self.forward.close()

        try:
            self.loop.call(stop())
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            for sid in self.consul.agent.services():
                if sid.startswith(owner_prefix(self.node)) or sid.startswith(self.node):
                    self.consul.agent.service.deregister(sid)


@pytest.fixture
def harness(consul_agent: str) -> Iterator[Harness]:
    h = Harness(consul_agent)
    try:
        yield h
    finally:
        h.close()


def test_opted_in_container_is_registered_as_meshctl_register_would(harness: Harness) -> None:
    harness.start_docker()
    harness.start_registrator()
    app = container("details-v1", COMPOSE_LABELS, ip="127.0.0.1")
    stray = container("postgres", env={"SERVICE_ACCOUNT": "x"}, exposed=("5432/tcp",))
    harness.loop.call(harness.docker.run(stray))
    harness.loop.call(harness.docker.run(app))
    sid = f"{owner_prefix(harness.node)}details-v1:15006"
    services = eventually(harness.services, 10, what="the details container registered")
    assert list(services) == [sid]
    # The same body through meshctl's own write path lands identically.
    twin = f"{harness.node}-meshctl-twin"
    host, port = harness.consul_addr.rsplit(":", 1)
    register(host, int(port), details_payload(twin, "127.0.0.1"))
    agent = harness.consul.agent
    ours, theirs = agent.services()[sid], agent.services()[twin]
    assert {**ours, "ID": twin} == theirs
    checks = {c["ServiceID"]: c for c in agent.checks().values()}
    keys = ("Name", "Type", "Interval", "Timeout", "ServiceName", "ServiceTags")
    assert {k: checks[sid][k] for k in keys} == {k: checks[twin][k] for k in keys}
    assert (checks[sid]["Type"], checks[sid]["Interval"]) == ("http", "10s")


def test_stop_event_deregisters_and_only_what_it_owns(harness: Harness) -> None:
    harness.start_docker()
    foreign = f"{harness.node}-by-hand"
    harness.consul.agent.service.register("details", service_id=foreign, port=1)
    harness.start_registrator(resync=60)  # only the event can remove it in time
    app = container("details-v1", COMPOSE_LABELS, ip="127.0.0.1")
    harness.loop.call(harness.docker.run(app))
    eventually(harness.services, 10, what="registered")
    reg = harness.registrator
    assert reg is not None
    syncs = reg.syncs
    harness.loop.call(harness.docker.kill(app))
    eventually(lambda: harness.services() == {}, 10, what="deregistered on the stop event")
    assert reg.syncs == syncs  # no full resync did it
    assert foreign in harness.consul.agent.services()


def test_resync_restores_what_consul_lost(harness: Harness) -> None:
    harness.start_docker()
    harness.start_registrator(resync=0.3)
    harness.loop.call(harness.docker.run(container("details-v1", COMPOSE_LABELS, ip="127.0.0.1")))
    (sid,) = eventually(harness.services, 10, what="registered")
    harness.consul.agent.service.deregister(sid)  # as a Consul restart with no state would
    assert sid not in harness.consul.agent.services()
    eventually(lambda: sid in harness.services(), 10, what="restored by a resync")


def test_invalid_container_is_logged_once_and_skipped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meshctl.registrator")
    harness.start_docker()
    reg = harness.start_registrator(resync=0.05)
    bad = container("bad", {"SERVICE_NAME": "Not_A_Label"}, ip="127.0.0.1", exposed=("80/tcp",))
    good = container("good", {"SERVICE_NAME": "good"}, ip="127.0.0.1", exposed=("80/tcp",))
    harness.loop.call(harness.docker.run(bad))
    harness.loop.call(harness.docker.run(good))
    eventually(harness.services, 10, what="the good one registered")
    syncs = reg.syncs
    eventually(lambda: reg.syncs >= syncs + 3, 10, what="a few resyncs")
    lines = [r for r in caplog.records if "container bad" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert list(harness.services()) == [f"{owner_prefix(harness.node)}good:80"]


def test_waits_for_a_docker_socket_that_answers_late(harness: Harness) -> None:
    reg = harness.start_registrator()
    eventually(lambda: reg.failures >= 2, 10, what="docker retried")
    harness.loop.call(harness.docker.run(container("late", {"SERVICE_NAME": "late"}, ip="1.2.3.4")))
    harness.start_docker()
    eventually(harness.services, 10, what="registered once docker answers")


def test_waits_for_a_consul_that_starts_late(harness: Harness) -> None:
    harness.start_docker()
    port = free_port()
    reg = harness.start_registrator(consul_addr=f"127.0.0.1:{port}")
    harness.loop.call(
        harness.docker.run(container("early", {"SERVICE_NAME": "early"}, ip="1.2.3.4"))
    )
    eventually(lambda: reg.failures >= 2, 10, what="consul retried")
    host, consul_port = harness.consul_addr.rsplit(":", 1)
    harness.forward = TcpForward(port, (host, int(consul_port)))
    harness.loop.call(harness.forward.open())
    eventually(harness.services, 10, what="registered once consul answers")
