"""Pilot side by side with Consul's own xDS server, on the same endpoint change.

    python -m benchmarks.peer --envoys 10 --rounds 20 --json

One Consul agent (the project's 1.16.3 build; Connect is on in dev mode) holds
one catalog, and two fleets of K real Envoys (the same binary) run at once:

- K sidecars served by Pilot, whose only egress is `pbackend` (a Sidecar
  resource, as Istio users scope sidecars);
- K Consul Connect sidecars (`consul connect envoy -bootstrap`), each of a
  `cweb` instance whose one upstream is `cbackend`, served by Consul's
  built-in xDS server.

Each backend starts with one instance. Rounds alternate between the sides
(A/B/A/B): a round adds (or removes) an instance of that side's backend in
Consul and times, per Envoy of that side, how long until its admin API shows
the cluster's new membership. Both processes' CPU is read from /proc around
every round, so each side's rounds report the CPU of the control plane that
served them (Consul's own figure includes its catalog work, which it does for
both sides). Prints one JSON line with both distributions and the ratios; it
does not pass or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.catalog import registration_payload
from api.resources import check_document
from api.store import ConfigStore, Write
from benchmarks.convergence import EnvoyFleet, cluster_name, proc_stats, start_pilot
from meshctl.procs import ConsulPorts, Supervisor, bin_path, free_port

# An always-passing check for the Connect sidecar registrations: their default checks
# probe the sidecar's public port, which nothing here serves (no app traffic is sent).
_PASSING = [{"Name": "bench", "TTL": "87600h", "Status": "passing"}]


@dataclass
class Side:
    name: str  # pilot or consul
    fleet: EnvoyFleet
    cluster: str  # the backend's cluster name in its Envoys
    backend: str
    latencies: list[float] = field(default_factory=list)
    missed: int = 0
    rounds: int = 0
    cpu: dict[str, float] = field(default_factory=lambda: {"pilot": 0.0, "consul": 0.0})


def _put(consul_http: int, path: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(f"http://127.0.0.1:{consul_http}{path}", data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def _output(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def _connect_instance(service: str, instance: str, address: str, port: int) -> dict[str, Any]:
    return {
        "Name": service,
        "ID": instance,
        "Address": address,
        "Port": port,
        "Connect": {"SidecarService": {"Port": port + 1, "Checks": _PASSING}},
    }


def _pilot_backend(instance: str, port: int) -> dict[str, Any]:
    return registration_payload(
        service="pbackend", instance_id=instance, address="127.0.0.3", port=port
    )


def _change(consul_http: int, side: Side, adding: bool, r: int) -> None:
    instance = f"{side.backend}-extra"
    if not adding:
        # (Consul removes a Connect instance's sidecar registration with it.)
        _put(consul_http, f"/v1/agent/service/deregister/{instance}")
        return
    port = 32_000 + 2 * r  # never an existing instance's address
    body = (
        _pilot_backend(instance, port)
        if side.name == "pilot"
        else _connect_instance("cbackend", instance, "127.0.0.4", port)
    )
    _put(consul_http, "/v1/agent/service/register", body)


def _scope_pilot(consul_http: int) -> None:
    """A Sidecar resource: the Pilot sidecars' only egress is pbackend."""
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"egress": [{"hosts": ["./pbackend.default.svc.cluster.local"]}]},
    }
    checked = check_document(doc, "benchmark", "default")
    assert checked.resource is not None, checked.errors

    async def write() -> None:
        store = ConfigStore(f"127.0.0.1:{consul_http}")
        try:
            await store.write([Write(checked.resource, -1)], by="benchmark")  # type: ignore[arg-type]
        finally:
            await store.close()

    asyncio.run(write())


def _consul_fleet(sup: Supervisor, workdir: Path, ports: ConsulPorts, k: int) -> EnvoyFleet:
    """K cweb instances with Connect sidecars, their Envoys bootstrapped by Consul itself."""
    fleet = EnvoyFleet(sup)
    for i in range(k):
        port = 40_000 + 10 * i
        body = _connect_instance("cweb", f"cweb-{i}", "127.0.0.5", port)
        body["Connect"]["SidecarService"]["Proxy"] = {
            "Upstreams": [{"DestinationName": "cbackend", "LocalBindPort": port + 2}]
        }
        _put(ports.http, "/v1/agent/service/register", body)
        admin = free_port()
        boot = _output(
            [
                bin_path("consul"),
                "connect",
                "envoy",
                f"-http-addr=127.0.0.1:{ports.http}",
                f"-grpc-addr=127.0.0.1:{ports.grpc}",
                "-sidecar-for",
                f"cweb-{i}",
                "-admin-bind",
                f"127.0.0.1:{admin}",
                "-bootstrap",
            ]
        )
        path = workdir / f"c-envoy-{i}.json"
        path.write_text(boot)
        fleet.start(f"c-envoy-{i}", path, admin)
    return fleet


def _consul_cluster(admin: int) -> str:
    """The name Consul gives the cbackend upstream's cluster (it carries the trust domain)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/clusters?format=json") as resp:
        statuses = json.loads(resp.read())["cluster_statuses"]
    return next(c["name"] for c in statuses if c["name"].startswith("cbackend."))


def _pct(latencies: list[float], p: float) -> float | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)


def _summary(side: Side) -> dict[str, Any]:
    own = side.cpu[side.name]
    return {
        "p50_ms": _pct(side.latencies, 0.50),
        "p90_ms": _pct(side.latencies, 0.90),
        "p99_ms": _pct(side.latencies, 0.99),
        "max_ms": _pct(side.latencies, 1.0),
        "mean_ms": round(1000 * statistics.fmean(side.latencies), 1) if side.latencies else None,
        "missed": side.missed,
        "rounds": side.rounds,
        "cpu_per_change_s": round(own / max(1, side.rounds), 4),
        # Pilot's rounds also cost Consul its catalog work and Pilot's blocking queries.
        "consul_cpu_per_change_s": round(side.cpu["consul"] / max(1, side.rounds), 4),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--envoys", type=int, default=10, help="real Envoys per side")
    parser.add_argument("--rounds", type=int, default=20, help="rounds per side")
    parser.add_argument("--debounce-quiet", type=float, default=0.1)
    parser.add_argument("--debounce-max", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    workdir = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    sup = Supervisor(workdir / "logs")
    try:
        ports = ConsulPorts()
        consul = sup.start("consul", ports.argv(bin_path("consul"), None))
        sup.wait_http("consul", f"http://127.0.0.1:{ports.http}/v1/status/leader")
        sup.wait_http("consul", f"http://127.0.0.1:{ports.http}/v1/connect/ca/roots", timeout=60)
        _put(ports.http, "/v1/agent/service/register", _pilot_backend("pbackend-0", 30_000))
        _put(
            ports.http,
            "/v1/agent/service/register",
            _connect_instance("cbackend", "cbackend-0", "127.0.0.4", 31_000),
        )
        _scope_pilot(ports.http)
        pilot_pid, grpc_port, _ = start_pilot(sup, ports.http, args)
        log(f"starting {args.envoys} Envoys per side")
        pilot_fleet = EnvoyFleet.for_pilot(sup, workdir, grpc_port, args.envoys)
        consul_fleet = _consul_fleet(sup, workdir, ports, args.envoys)
        pilot_fleet.ready()
        consul_fleet.ready()
        sides = [
            Side("pilot", pilot_fleet, cluster_name("pbackend"), "pbackend"),
            Side("consul", consul_fleet, "", "cbackend"),
        ]
        for side in sides:  # both start with one backend instance, seen by every Envoy
            if side.name == "consul":
                side.cluster = _consul_cluster(consul_fleet.admins[0])
            got = side.fleet.wait(side.cluster, 1, time.monotonic(), 60.0)
            assert all(x is not None for x in got), f"{side.name}: not every Envoy synced"
        pids = {"pilot": pilot_pid, "consul": consul.popen.pid}
        for r in range(2 * args.rounds):
            side = sides[r % 2]
            adding = (r // 2) % 2 == 0
            before = {name: proc_stats(pid)[1] for name, pid in pids.items()}
            t0 = time.monotonic()
            _change(ports.http, side, adding, r)
            got = side.fleet.wait(side.cluster, 2 if adding else 1, t0, 30.0)
            time.sleep(0.5)  # let the control plane finish the change before reading its CPU
            for name, pid in pids.items():
                side.cpu[name] += proc_stats(pid)[1] - before[name]
            side.latencies.extend(x for x in got if x is not None)
            side.missed += sum(1 for x in got if x is None)
            side.rounds += 1
            log(f"round {r}: {side.name} p50 so far {_pct(side.latencies, 0.5)} ms")
        pilot, peer = (_summary(s) for s in sides)
        result = {
            "envoys_per_side": args.envoys,
            "rounds_per_side": args.rounds,
            "envoy": _output([bin_path("envoy"), "--version"]).split("version:")[-1].split("/")[1],
            "consul": _output([bin_path("consul"), "version"]).split()[1],
            "pilot": pilot,
            "consul_xds": peer,
            "ratio_p50": _ratio(pilot["p50_ms"], peer["p50_ms"]),
            "ratio_p99": _ratio(pilot["p99_ms"], peer["p99_ms"]),
            "ratio_cpu_per_change": _ratio(pilot["cpu_per_change_s"], peer["cpu_per_change_s"]),
            "pilot_rss_mb": round(proc_stats(pilot_pid)[0], 1),
            "consul_rss_mb": round(proc_stats(consul.popen.pid)[0], 1),
            "debounce_quiet_s": args.debounce_quiet,
        }
        print(json.dumps(result), flush=True)
        return 0
    finally:
        sup.stop_all()


if __name__ == "__main__":
    sys.exit(main())
