"""Convergence benchmark: a change in Consul -> every affected proxy has ACKed it.

    python -m benchmarks.convergence --proxies 200 --services 100 --json

Starts a real Consul agent and a real Pilot (as its own process, so its RSS
and CPU are its own), registers the services, connects the proxies and
waits for the initial sync (every proxy has its endpoints and Pilot has read
every ACK), then runs rounds: each round adds (or removes) an instance of one
service in Consul (or, with `--change config`, edits one VirtualService where
Galley stores it) and times, per proxy, how long until it has received that
change and sent its ACK. Proxies are simulated ADS clients that decode every
response (clusters, endpoints, listeners, routes) and follow the SotW (or,
with --delta, the Delta) protocol as Envoy does; a worker process decodes
each distinct response once for all its proxies, since thousands of real
proxies would not share this machine's two cores with Pilot. `--envoys K`
uses K real Envoys instead and watches their admin API. Prints one JSON line;
it does not pass or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from api.catalog import registration_payload
from api.store import key_for
from meshctl.bootstrap import SidecarBootstrap, render_yaml
from meshctl.procs import ConsulPorts, Supervisor, bin_path, free_port
from pilot.xds import typeurls

ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
CDS, EDS, LDS, RDS = typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE


def cluster_name(service: str) -> str:
    return f"outbound|80||{service}.default.svc.cluster.local"


# --- simulated proxies ------------------------------------------------------------


def _eds_clusters(clusters: Iterable[cluster_pb2.Cluster]) -> list[str]:
    """Names of the EDS clusters, in order."""
    return [c.name for c in clusters if c.type == cluster_pb2.Cluster.EDS]


def _route_names(listeners: Iterable[listener_pb2.Listener]) -> list[str]:
    """Route configurations that the listeners' HTTP connection managers fetch by RDS."""
    names: list[str] = []
    for lis in listeners:
        for chain in lis.filter_chains:
            for f in chain.filters:
                hcm = hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                if hcm.HasField("rds"):
                    names.append(hcm.rds.route_config_name)
    return names


@dataclass
class Target:
    """What a round waits for: `count` endpoints in cluster `name` (an endpoint change),
    or, with `route`, a route timeout of `count` seconds in virtual host `name`."""

    name: str
    count: int
    t0: float
    route: bool = False


@dataclass(frozen=True)
class _Decoded:
    """What a simulated proxy needs from a response: the ACK fields and, per type, the
    EDS cluster names (CDS), endpoint counts (EDS) or route names (LDS)."""

    type_url: str
    nonce: str
    version: str
    names: tuple[str, ...] = ()
    endpoints: tuple[tuple[str, int], ...] = ()
    removed: tuple[str, ...] = ()
    timeouts: tuple[tuple[str, int], ...] = ()  # RDS: virtual host -> first route's timeout


# Responses decoded in this worker, by their bytes. Pilot sends proxies of one shape the
# same bytes; real proxies would each decode them on their own CPU, so simulated ones
# decode each distinct response once and leave the machine's cores to the control plane.
_DECODED: dict[bytes, _Decoded] = {}
_DECODED_MAX = 256


def _decode_sotw(raw: bytes) -> _Decoded:
    found = _DECODED.get(raw)
    if found is not None:
        return found
    resp = discovery_pb2.DiscoveryResponse.FromString(raw)
    t = resp.type_url
    values = [r.value for r in resp.resources]
    names: tuple[str, ...] = ()
    endpoints: tuple[tuple[str, int], ...] = ()
    timeouts: tuple[tuple[str, int], ...] = ()
    if t == CDS:
        names = tuple(sorted(_eds_clusters(cluster_pb2.Cluster.FromString(v) for v in values)))
    elif t == EDS:
        endpoints = _endpoint_counts(
            endpoint_pb2.ClusterLoadAssignment.FromString(v) for v in values
        )
    elif t == LDS:
        names = tuple(sorted(_route_names(listener_pb2.Listener.FromString(v) for v in values)))
    elif t == RDS:
        timeouts = _route_timeouts(route_pb2.RouteConfiguration.FromString(v) for v in values)
    decoded = _Decoded(t, resp.nonce, resp.version_info, names, endpoints, (), timeouts)
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[raw] = decoded
    return decoded


def _route_timeouts(
    tables: Iterable[route_pb2.RouteConfiguration],
) -> tuple[tuple[str, int], ...]:
    return tuple(
        (vh.name, vh.routes[0].route.timeout.seconds if vh.routes else 0)
        for table in tables
        for vh in table.virtual_hosts
    )


def _endpoint_counts(
    assignments: Iterable[endpoint_pb2.ClusterLoadAssignment],
) -> tuple[tuple[str, int], ...]:
    return tuple(
        (cla.cluster_name, sum(len(e.lb_endpoints) for e in cla.endpoints)) for cla in assignments
    )


def _names_field(names: Iterable[str]) -> bytes:
    """The resource_names of a request, serialized on their own."""
    return discovery_pb2.DiscoveryRequest(resource_names=list(names)).SerializeToString()


def _sotw_request(type_url: str, names: bytes = b"", nonce: str = "", version: str = "") -> bytes:
    """A SotW request in Envoy's field order (version, names, type, nonce): serialized
    pieces concatenate into one message, so a long name list is serialized once."""
    head = discovery_pb2.DiscoveryRequest(version_info=version).SerializeToString()
    tail = discovery_pb2.DiscoveryRequest(
        type_url=type_url, response_nonce=nonce
    ).SerializeToString()
    return head + names + tail


@dataclass
class SimProxy:
    """An ADS client that behaves like Envoy's SotW ADS: parse, subscribe, ACK."""

    node_id: str
    endpoints: dict[str, int] = field(default_factory=dict)
    timeouts: dict[str, int] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    target: Target | None = None
    latency: float | None = None
    got: asyncio.Event = field(default_factory=asyncio.Event)
    expected_clusters: int = 0

    def node(self) -> base_pb2.Node:
        meta = struct_pb2.Struct()
        meta.update(
            {
                "NAMESPACE": "default",
                "OUTBOUND_PORT": "15001",
                "INBOUND_PORT": "15006",
                "APP_PORT": "8080",
            }
        )
        return base_pb2.Node(id=self.node_id, cluster="bench", metadata=meta)

    def _store_endpoints(self, counts: Iterable[tuple[str, int]]) -> None:
        self.endpoints.update(counts)

    def reached(self) -> bool:
        target = self.target
        if target is None:
            return False
        seen = self.timeouts if target.route else self.endpoints
        return seen.get(target.name) == target.count

    def _check_progress(self) -> None:
        """Record the latency once the target is in; mark synced once every cluster is."""
        if self.target and self.latency is None and self.reached():
            self.latency = time.monotonic() - self.target.t0
            self.got.set()
        if len(self.endpoints) >= self.expected_clusters:
            self.synced.set()

    async def run(self, channel: grpc.aio.Channel) -> None:
        call = channel.stream_stream(
            ADS_METHOD, request_serializer=None, response_deserializer=None
        )()
        eds_names: tuple[str, ...] = ()
        eds_field = b""
        rds_names: tuple[str, ...] = ()
        rds_field = b""
        hello = discovery_pb2.DiscoveryRequest(type_url=CDS)
        hello.node.CopyFrom(self.node())
        await call.write(hello.SerializeToString())
        await call.write(_sotw_request(LDS))
        while True:
            raw = await call.read()
            if raw is grpc.aio.EOF:
                return
            got = _decode_sotw(raw)
            t, ack = got.type_url, {"nonce": got.nonce, "version": got.version}
            if t == CDS:
                await call.write(_sotw_request(CDS, **ack))
                if got.names != eds_names:
                    eds_names, eds_field = got.names, _names_field(got.names)
                    await call.write(_sotw_request(EDS, eds_field))
            elif t == EDS:
                self._store_endpoints(got.endpoints)
                await call.write(_sotw_request(EDS, eds_field, **ack))
                self._check_progress()
            elif t == LDS:
                await call.write(_sotw_request(LDS, **ack))
                if got.names != rds_names:
                    rds_names, rds_field = got.names, _names_field(got.names)
                    await call.write(_sotw_request(RDS, rds_field))
            elif t == RDS:
                self.timeouts.update(got.timeouts)
                await call.write(_sotw_request(RDS, rds_field, **ack))
                self._check_progress()


DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


class DeltaSimProxy(SimProxy):
    """The same client speaking incremental xDS, as Envoy does with DELTA_GRPC."""

    async def run(self, channel: grpc.aio.Channel) -> None:
        call = channel.stream_stream(
            DELTA_METHOD, request_serializer=None, response_deserializer=None
        )()

        def req(
            type_url: str,
            subscribe: list[str] = (),
            nonce: str = "",  # type: ignore[assignment]
            node: bool = False,
        ) -> bytes:
            msg = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_subscribe=subscribe, response_nonce=nonce
            )
            if node:
                msg.node.CopyFrom(self.node())
            return msg.SerializeToString()

        clusters: set[str] = set()
        routes: set[str] = set()
        await call.write(req(CDS, node=True))
        await call.write(req(LDS))
        while True:
            raw = await call.read()
            if raw is grpc.aio.EOF:
                return
            got = _decode_delta(raw)
            t = got.type_url
            await call.write(req(t, nonce=got.nonce))  # ACK
            if t == CDS:
                new = [name for name in got.names if name not in clusters]
                clusters.update(new)
                clusters -= set(got.removed)
                if new:
                    await call.write(req(EDS, sorted(new)))
            elif t == EDS:
                self._store_endpoints(got.endpoints)
                self._check_progress()
            elif t == LDS:
                names = set(got.names)
                if names - routes:
                    await call.write(req(RDS, sorted(names - routes)))
                    routes |= names
            elif t == RDS:
                self.timeouts.update(got.timeouts)
                self._check_progress()


def _decode_delta(raw: bytes) -> _Decoded:
    """`_decode_sotw` for Delta responses (`removed`: the names removed)."""
    found = _DECODED.get(raw)
    if found is not None:
        return found
    resp = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
    t = resp.type_url
    values = [r.resource.value for r in resp.resources]
    names: tuple[str, ...] = ()
    endpoints: tuple[tuple[str, int], ...] = ()
    timeouts: tuple[tuple[str, int], ...] = ()
    if t == CDS:
        eds = _eds_clusters(cluster_pb2.Cluster.FromString(v) for v in values)
        names = tuple(dict.fromkeys(eds))
    elif t == EDS:
        endpoints = _endpoint_counts(
            endpoint_pb2.ClusterLoadAssignment.FromString(v) for v in values
        )
    elif t == LDS:
        names = tuple(_route_names(listener_pb2.Listener.FromString(v) for v in values))
    elif t == RDS:
        timeouts = _route_timeouts(route_pb2.RouteConfiguration.FromString(v) for v in values)
    removed = tuple(resp.removed_resources)
    decoded = _Decoded(t, resp.nonce, "", names, endpoints, removed, timeouts)
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[raw] = decoded
    return decoded


async def _client_worker(
    pilot: str, ids: list[str], services: int, conn: Connection, delta: bool = False
) -> None:
    kind = DeltaSimProxy if delta else SimProxy
    proxies = [kind(node_id=i, expected_clusters=services) for i in ids]
    # One HTTP/2 connection per proxy, as separate Envoys would have.
    channels = [
        grpc.aio.insecure_channel(pilot, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in proxies
    ]
    tasks = [asyncio.create_task(p.run(ch)) for p, ch in zip(proxies, channels, strict=True)]
    loop = asyncio.get_running_loop()
    try:
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "sync":
                await asyncio.wait_for(asyncio.gather(*(p.synced.wait() for p in proxies)), cmd[1])
                conn.send(("synced",))
            elif cmd[0] == "arm":
                for p in proxies:
                    p.target, p.latency = Target(*cmd[1:]), None
                    p.got.clear()
                    if p.reached():  # already there (shouldn't be)
                        p.latency = 0.0
                        p.got.set()
                conn.send(("armed",))
            elif cmd[0] == "collect":
                await asyncio.wait(
                    [asyncio.create_task(p.got.wait()) for p in proxies], timeout=cmd[1]
                )
                conn.send(("latencies", [p.latency for p in proxies]))
            elif cmd[0] == "stop":
                return
    finally:
        for t in tasks:
            t.cancel()
        for ch in channels:
            await ch.close()


def _worker_main(
    pilot: str, ids: list[str], services: int, conn: Connection, delta: bool = False
) -> None:
    try:
        import uvloop

        uvloop.run(_client_worker(pilot, ids, services, conn, delta))
    except KeyboardInterrupt:
        pass


# --- real Envoys --------------------------------------------------------------------


_BASE_IDS = itertools.count(20_000 + os.getpid() % 10_000 * 4)


class EnvoyFleet:
    """Real Envoys, each from its own bootstrap file, watched through their admin API."""

    def __init__(self, sup: Supervisor) -> None:
        self._sup = sup
        self._names: list[str] = []
        self.admins: list[int] = []

    def start(self, name: str, bootstrap: Path, admin: int) -> None:
        self._sup.start(
            name,
            [
                bin_path("envoy"),
                "-c",
                str(bootstrap),
                "--base-id",
                str(next(_BASE_IDS)),  # each Envoy on a host needs its own
                "--concurrency",
                "1",
                "--log-level",
                "error",
            ],
        )
        self.admins.append(admin)
        self._names.append(name)

    def ready(self, timeout: float = 120) -> None:
        for name, admin in zip(self._names, self.admins, strict=True):
            self._sup.wait_http(name, f"http://127.0.0.1:{admin}/ready", timeout=timeout)

    @classmethod
    def for_pilot(
        cls, sup: Supervisor, workdir: Path, pilot_port: int, k: int, delta: bool = False
    ) -> EnvoyFleet:
        """K sidecars of the service `bench`, served by Pilot at `pilot_port`."""
        fleet = cls(sup)
        for i in range(k):
            admin = free_port()
            spec = SidecarBootstrap(
                pilots=(("127.0.0.1", pilot_port),),
                service="bench",
                namespace="default",
                node_id=f"envoy-{i}",
                admin_port=admin,
                outbound_port=free_port(),
                delta=delta,
            )
            path = workdir / f"envoy-{i}.yaml"
            path.write_text(render_yaml(spec.build()))
            fleet.start(f"envoy-{i}", path, admin)
        return fleet

    def members(self, admin: int, cluster: str) -> int | None:
        pattern = f"^cluster.{cluster.replace('|', '.')}.membership_total$"  # '.' matches '|'
        url = f"http://127.0.0.1:{admin}/stats?filter={pattern}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.endswith(tuple("0123456789")) and "membership_total" in line:
                return int(line.rsplit(": ", 1)[1])
        return None

    def wait(self, cluster: str, count: int, t0: float, timeout: float) -> list[float | None]:
        pending = dict.fromkeys(self.admins)
        deadline = time.monotonic() + timeout
        while any(v is None for v in pending.values()) and time.monotonic() < deadline:
            for admin, got in pending.items():
                if got is None and self.members(admin, cluster) == count:
                    pending[admin] = time.monotonic() - t0
            time.sleep(0.002)
        return list(pending.values())


# --- the run ------------------------------------------------------------------------


def _status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM, ...), in MB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:")) / 1024


def peak_rss_mb(pid: int) -> float:
    """The most RSS the process has held so far, in MB."""
    return _status_mb(pid, "VmHWM")


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds user+system) of a process, from /proc."""
    rss = _status_mb(pid, "VmRSS")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


async def _register_all(consul_http: int, services: int) -> None:
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            body = registration_payload(
                service=f"svc-{i}", instance_id=f"svc-{i}-0", address="127.0.0.2", port=10_000 + i
            )
            async with (
                sem,
                session.put(
                    f"http://127.0.0.1:{consul_http}/v1/agent/service/register", json=body
                ) as resp,
            ):
                resp.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(services)))


def _consul_put(consul_http: int, path: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(f"http://127.0.0.1:{consul_http}{path}", data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def scale_parser(
    module: str, doc: str | None, proxies: int, services: int
) -> argparse.ArgumentParser:
    """A benchmark's parser with the scale every simulation takes: proxies and services."""
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--proxies", type=int, default=proxies)
    parser.add_argument("--services", type=int, default=services)
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = scale_parser("convergence", __doc__, proxies=200, services=100)
    parser.add_argument(
        "--envoys", type=int, default=0, help="use K real Envoys instead of simulated proxies"
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--change",
        choices=("endpoints", "config"),
        default="endpoints",
        help="what each round changes: an instance in the catalog, or one VirtualService",
    )
    parser.add_argument(
        "--client-procs", type=int, default=1, help="processes for simulated proxies"
    )
    parser.add_argument(
        "--delta", action="store_true", help="simulated proxies speak incremental (Delta) xDS"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="seconds without changes after the rounds before Pilot's RSS is read again",
    )
    parser.add_argument("--debounce-quiet", type=float, default=0.1)
    parser.add_argument("--debounce-max", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser


def start_pilot(
    sup: Supervisor, consul_http: int, args: argparse.Namespace
) -> tuple[int, int, int]:
    """Start Pilot on free ports and wait until it is ready: (its pid, its gRPC port, its
    HTTP port). `args`: the debounce settings (debounce_quiet, debounce_max)."""
    grpc_port, http_port = free_port(), free_port()
    pilot = sup.start(
        "pilot",
        [
            sys.executable,
            "-m",
            "pilot",
            f"--consul-addr=127.0.0.1:{consul_http}",
            f"--grpc-addr=127.0.0.1:{grpc_port}",
            f"--http-addr=127.0.0.1:{http_port}",
            f"--debounce-quiet={args.debounce_quiet}",
            f"--debounce-max={args.debounce_max}",
            "--log-level=WARNING",
        ],
    )
    sup.wait_http("pilot", f"http://127.0.0.1:{http_port}/ready", timeout=120)
    return pilot.popen.pid, grpc_port, http_port


def wait_all_acked(http_port: int, proxies: int, timeout: float) -> None:
    """Until Pilot has `proxies` streams and every response it wrote them is ACKed: the
    end of the initial sync as Pilot sees it (a proxy has its endpoints before Pilot
    has read every ACK, and a change made meanwhile would wait behind them)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{http_port}/debug/syncz"
    while True:
        with urllib.request.urlopen(url, timeout=30) as resp:
            status = json.load(resp)["proxies"]
        if len(status) >= proxies and all(
            t["version_acked"] == t["version_sent"] for p in status for t in p["types"].values()
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every proxy ACKed its initial config in {timeout:.0f}s")
        time.sleep(0.25)


def _start_envoys(
    sup: Supervisor, workdir: Path, grpc_port: int, args: argparse.Namespace
) -> EnvoyFleet:
    fleet = EnvoyFleet.for_pilot(sup, workdir, grpc_port, args.envoys, args.delta)
    fleet.ready()
    return fleet


def _start_workers(
    grpc_port: int, args: argparse.Namespace, workers: list[tuple[mp.Process, Connection]]
) -> None:
    """Spread the simulated proxies over worker processes and wait for their initial sync."""
    ctx = mp.get_context("spawn")
    ids = [f"sim-{i}" for i in range(args.proxies)]
    for w in range(args.client_procs):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_worker_main,
            daemon=True,
            args=(
                f"127.0.0.1:{grpc_port}",
                ids[w :: args.client_procs],
                args.services,
                child,
                args.delta,
            ),
        )
        proc.start()
        workers.append((proc, parent))
    for _, c in workers:
        c.send(("sync", 300.0))
    for _, c in workers:
        assert c.recv() == ("synced",)


def _ask_workers(workers: list[tuple[mp.Process, Connection]], cmd: tuple[Any, ...]) -> list[Any]:
    """Send one command to every worker, then collect every answer."""
    for _, c in workers:
        c.send(cmd)
    return [c.recv() for _, c in workers]


def _change(consul_http: int, svc: str, adding: bool, r: int) -> None:
    """Add (or remove) the extra instance of a service in Consul."""
    if adding:
        _consul_put(
            consul_http,
            "/v1/agent/service/register",
            registration_payload(
                service=svc,
                instance_id=f"{svc}-extra",
                address="127.0.0.3",
                port=20_000 + r,
            ),
        )
    else:
        _consul_put(consul_http, f"/v1/agent/service/deregister/{svc}-extra")


_CONFIG_HOST = "svc-0.default.svc.cluster.local"


def _edit_virtual_service(consul_http: int, seconds: int) -> None:
    """Write one VirtualService (svc-0's routes, with a timeout of `seconds`) where Galley
    keeps config, as `meshctl apply` would."""
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "hosts": [_CONFIG_HOST],
            "http": [
                {"route": [{"destination": {"host": _CONFIG_HOST}}], "timeout": f"{seconds}s"}
            ],
        },
    }
    _consul_put(consul_http, f"/v1/kv/{key_for('VirtualService', 'default', 'bench')}", doc)


def _run_rounds(
    args: argparse.Namespace,
    consul_http: int,
    fleet: EnvoyFleet | None,
    workers: list[tuple[mp.Process, Connection]],
) -> tuple[list[float], int]:
    """(every latency seen, sorted; how many proxies missed a change)."""
    latencies: list[float] = []
    missing = 0
    for r in range(args.rounds):
        svc = f"svc-{r % args.services}"
        adding = (r // args.services) % 2 == 0
        cluster = cluster_name(svc)
        count = 2 if adding else 1
        t0 = time.monotonic()
        if args.change == "config":
            seconds = r % 50 + 1  # differs from the round before
            _ask_workers(workers, ("arm", f"{_CONFIG_HOST}:80", seconds, t0, True))
            _edit_virtual_service(consul_http, seconds)
        else:
            if fleet is None:
                _ask_workers(workers, ("arm", cluster, count, t0))
            _change(consul_http, svc, adding, r)
        if fleet is not None:
            got = fleet.wait(cluster, count, t0, 30.0)
        else:
            got = []
            for answer in _ask_workers(workers, ("collect", 30.0)):
                got.extend(answer[1])
        latencies.extend(x for x in got if x is not None)
        missing += sum(1 for x in got if x is None)
        time.sleep(0.05)
    latencies.sort()
    return latencies, missing


def _pct(latencies: list[float], p: float) -> float:
    """The p-th percentile of sorted latencies, in milliseconds."""
    if not latencies:
        return float("nan")
    return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)


def stop_workers(workers: list[tuple[mp.Process, Connection]]) -> None:
    """Ask each simulated-proxy process to stop; kill one that does not in 5 s."""
    for proc, c in workers:
        try:
            c.send(("stop",))
        except OSError:
            pass
        proc.join(5)
        if proc.is_alive():
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.envoys and args.change == "config":
        parser.error("--change config times simulated proxies only")
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))

    workdir = Path(tempfile.mkdtemp(prefix="bench-convergence-"))
    sup = Supervisor(workdir / "logs")
    workers: list[tuple[mp.Process, Connection]] = []
    try:
        ports = ConsulPorts()
        sup.start("consul", ports.argv(bin_path("consul"), None))
        sup.wait_http("consul", f"http://127.0.0.1:{ports.http}/v1/status/leader")
        time.sleep(1.0)
        log(f"registering {args.services} services")
        asyncio.run(_register_all(ports.http, args.services))
        pid, grpc_port, pilot_http = start_pilot(sup, ports.http, args)
        rss_idle, cpu_start = proc_stats(pid)
        t_sync = time.monotonic()
        fleet: EnvoyFleet | None = None
        n = args.envoys or args.proxies
        if args.envoys:
            fleet = _start_envoys(sup, workdir, grpc_port, args)
        else:
            _start_workers(grpc_port, args, workers)
        wait_all_acked(pilot_http, n, 300.0)
        sync_s = time.monotonic() - t_sync
        rss_sync, cpu_sync = proc_stats(pid)
        log(f"{n} proxies synced in {sync_s:.2f}s; pilot RSS {rss_sync:.0f} MB")

        cpu_before = proc_stats(pid)[1]
        latencies, missing = _run_rounds(args, ports.http, fleet, workers)
        rss, cpu_end = proc_stats(pid)
        peak = peak_rss_mb(pid)
        time.sleep(args.settle)  # what Pilot holds between changes, once it is quiet
        rss_settled = proc_stats(pid)[0]
        result = {
            "proxies": n,
            "services": args.services,
            "real_envoys": bool(args.envoys),
            "delta": args.delta,
            "change": args.change,
            "rounds": args.rounds,
            "p50_ms": _pct(latencies, 0.50),
            "p90_ms": _pct(latencies, 0.90),
            "p99_ms": _pct(latencies, 0.99),
            "max_ms": round(1000 * latencies[-1], 1) if latencies else None,
            "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
            "missed": missing,
            "initial_sync_s": round(sync_s, 2),
            "pilot_rss_mb": round(rss, 1),
            "pilot_rss_idle_mb": round(rss_idle, 1),  # the catalog in, no proxy yet
            "pilot_rss_synced_mb": round(rss_sync, 1),
            "pilot_rss_settled_mb": round(rss_settled, 1),
            "pilot_rss_peak_mb": round(peak, 1),
            "rss_per_proxy_kb": round(1024 * (rss_sync - rss_idle) / n, 1),
            "pilot_cpu_s": round(cpu_end - cpu_before, 2),
            "pilot_cpu_per_push_s": round((cpu_end - cpu_before) / max(1, args.rounds), 3),
            "pilot_cpu_sync_s": round(cpu_sync - cpu_start, 2),
            "debounce_quiet_s": args.debounce_quiet,
            "debounce_max_s": args.debounce_max,
        }
        print(json.dumps(result), flush=True)
        return 0
    finally:
        stop_workers(workers)
        sup.stop_all()


if __name__ == "__main__":
    sys.exit(main())
