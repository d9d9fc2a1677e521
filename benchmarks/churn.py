"""Churn benchmark: Pilot's memory while proxies come and go and endpoints flap.

    python -m benchmarks.churn --proxies 500 --services 200 --minutes 30 --json

Starts a real Consul and a real Pilot (its own process), registers the
services and connects the simulated proxies of `benchmarks.convergence`. Then,
for the given time, each tick flaps one endpoint (an instance added to or
removed from one service in Consul) and every few ticks replaces some proxies:
their streams close and as many new proxies (new node ids) connect and sync.
Pilot's RSS is sampled throughout. Memory that a closed stream or a past push
left behind shows as growth between the first and the last part of the run;
the answer is the JSON line: RSS at the start and the end of the churn (median
of the samples in the first and last tenth), its maximum, and its least-squares
slope over the whole run and over its second half (after caches have warmed).
It ends by waiting until every proxy then connected is synced and every
response ACKed (an error if not); it does not pass or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path

import grpc

from benchmarks.convergence import (
    DeltaSimProxy,
    SimProxy,
    _change,
    _register_all,
    proc_stats,
    scale_parser,
    start_pilot,
    stop_workers,
    wait_all_acked,
)
from meshctl.procs import ConsulPorts, Supervisor, bin_path

_CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


class _Fleet:
    """A worker's proxies, each on its own connection; the oldest are replaced first."""

    def __init__(self, pilot: str, services: int, delta: bool, prefix: str) -> None:
        self._pilot, self._services, self._prefix = pilot, services, prefix
        self._kind = DeltaSimProxy if delta else SimProxy
        self._next = 0
        self.live: list[tuple[SimProxy, grpc.aio.Channel, asyncio.Task[None]]] = []

    def connect(self, n: int) -> list[SimProxy]:
        started = []
        for _ in range(n):
            proxy = self._kind(
                node_id=f"{self._prefix}-{self._next}", expected_clusters=self._services
            )
            self._next += 1
            channel = grpc.aio.insecure_channel(self._pilot, options=_CHANNEL_OPTIONS)
            self.live.append((proxy, channel, asyncio.create_task(proxy.run(channel))))
            started.append(proxy)
        return started

    async def disconnect(self, n: int) -> None:
        leaving, self.live = self.live[:n], self.live[n:]
        for _, channel, task in leaving:
            task.cancel()
            await channel.close()

    async def close(self) -> None:
        await self.disconnect(len(self.live))


async def _worker(
    pilot: str, prefix: str, proxies: int, services: int, delta: bool, conn: Connection
) -> None:
    fleet = _Fleet(pilot, services, delta, prefix)
    loop = asyncio.get_running_loop()
    try:
        pending = fleet.connect(proxies)
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "sync":  # wait until the proxies connected last have every cluster
                await asyncio.wait_for(asyncio.gather(*(p.synced.wait() for p in pending)), cmd[1])
                conn.send(("synced",))
            elif cmd[0] == "replace":
                await fleet.disconnect(cmd[1])
                pending = fleet.connect(cmd[1])
                conn.send(("replaced",))
            elif cmd[0] == "stop":
                return
    finally:
        await fleet.close()


def _worker_main(
    pilot: str, prefix: str, proxies: int, services: int, delta: bool, conn: Connection
) -> None:
    import uvloop

    uvloop.run(_worker(pilot, prefix, proxies, services, delta, conn))


def _slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per hour."""
    if len(samples) < 2:
        return 0.0
    ts, ys = [t for t, _ in samples], [y for _, y in samples]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return 3600 * sum((t - mt) * (y - my) for t, y in samples) / var


def _tenth(samples: list[tuple[float, float]], last: bool) -> float:
    k = max(1, len(samples) // 10)
    part = samples[-k:] if last else samples[:k]
    return statistics.median(y for _, y in part)


def _parser() -> argparse.ArgumentParser:
    parser = scale_parser("churn", __doc__, proxies=500, services=200)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between endpoint flaps")
    parser.add_argument(
        "--replace-every", type=int, default=5, help="ticks between proxy replacements"
    )
    parser.add_argument(
        "--replace", type=float, default=0.05, help="share of the proxies replaced each time"
    )
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--delta", action="store_true", help="proxies speak Delta xDS")
    parser.add_argument(
        "--sample-every", type=float, default=10.0, help="seconds between RSS samples"
    )
    parser.add_argument("--debounce-quiet", type=float, default=0.1)
    parser.add_argument("--debounce-max", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser


def _ask(workers: list[tuple[mp.process.BaseProcess, Connection]], cmd: tuple[object, ...]) -> None:
    for _, c in workers:
        c.send(cmd)
    for _, c in workers:
        c.recv()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    workdir = Path(tempfile.mkdtemp(prefix="bench-churn-"))
    sup = Supervisor(workdir / "logs")
    workers: list[tuple[mp.process.BaseProcess, Connection]] = []
    try:
        ports = ConsulPorts()
        sup.start("consul", ports.argv(bin_path("consul"), None))
        sup.wait_http("consul", f"http://127.0.0.1:{ports.http}/v1/status/leader")
        time.sleep(1.0)
        asyncio.run(_register_all(ports.http, args.services))
        pid, grpc_port, pilot_http = start_pilot(sup, ports.http, args)
        rss_idle, _ = proc_stats(pid)
        ctx = mp.get_context("spawn")
        share = [len(range(w, args.proxies, args.client_procs)) for w in range(args.client_procs)]
        for w, n in enumerate(share):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                daemon=True,
                args=(f"127.0.0.1:{grpc_port}", f"churn{w}", n, args.services, args.delta, child),
            )
            proc.start()
            workers.append((proc, parent))
        _ask(workers, ("sync", 600.0))
        wait_all_acked(pilot_http, args.proxies, 600.0)
        rss_synced, cpu_start = proc_stats(pid)
        log(f"{args.proxies} proxies synced; pilot RSS {rss_synced:.0f} MB")

        per_worker = [max(1, round(n * args.replace)) for n in share]
        samples: list[tuple[float, float]] = []
        t0 = time.monotonic()
        end = t0 + 60 * args.minutes
        tick = flaps = replaced = 0
        next_sample = t0
        while time.monotonic() < end:
            svc = f"svc-{tick % args.services}"
            _change(ports.http, svc, (tick // args.services) % 2 == 0, tick)
            flaps += 1
            tick += 1
            if tick % args.replace_every == 0:
                for (_, c), k in zip(workers, per_worker, strict=True):
                    c.send(("replace", k))
                for _, c in workers:
                    c.recv()
                replaced += sum(per_worker)
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - t0, proc_stats(pid)[0]))
                log(f"{(now - t0) / 60:5.1f} min: pilot RSS {samples[-1][1]:.0f} MB")
                next_sample += args.sample_every
            time.sleep(max(0.0, t0 + tick * args.tick - time.monotonic()))

        _ask(workers, ("sync", 300.0))
        wait_all_acked(pilot_http, args.proxies, 300.0)
        rss_end, cpu_end = proc_stats(pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{pilot_http}/debug/syncz", timeout=30) as r:
            streams_at_end = len(json.load(r)["proxies"])  # more than --proxies: a stream leaked
        samples.append((time.monotonic() - t0, rss_end))
        start_mb, end_mb = _tenth(samples, last=False), _tenth(samples, last=True)
        result = {
            "proxies": args.proxies,
            "services": args.services,
            "delta": args.delta,
            "minutes": args.minutes,
            "endpoint_flaps": flaps,
            "proxies_replaced": replaced,
            "pilot_rss_idle_mb": round(rss_idle, 1),
            "pilot_rss_synced_mb": round(rss_synced, 1),
            "rss_start_mb": round(start_mb, 1),
            "rss_end_mb": round(end_mb, 1),
            "rss_max_mb": round(max(y for _, y in samples), 1),
            "rss_growth_mb": round(end_mb - start_mb, 1),
            "rss_slope_mb_per_hour": round(_slope_per_hour(samples), 1),
            "rss_slope_second_half_mb_per_hour": round(
                _slope_per_hour(samples[len(samples) // 2 :]), 1
            ),
            "pilot_cpu_s": round(cpu_end - cpu_start, 1),
            "samples": len(samples),
            "pilot_streams_at_end": streams_at_end,
        }
        print(json.dumps(result), flush=True)
        return 0
    finally:
        stop_workers(workers)
        sup.stop_all()


if __name__ == "__main__":
    sys.exit(main())
