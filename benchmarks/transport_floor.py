"""Transport floor: what one push costs grpc.aio alone, with no xDS logic at all.

    python -m benchmarks.transport_floor --streams 2000 --json

A server process holds N bidirectional gRPC streams (one HTTP/2 connection each,
as N Envoys would open) from client processes. Each round the server writes
one small pre-encoded message to every stream and waits until every client has
answered it (the ACK; `--ack-size` makes it as long as a SotW ACK that names
every watched cluster). The server does nothing else: no decoding, no config, no
bookkeeping. Its CPU time per round is the least any Pilot built on grpc.aio
pays for a push to N proxies on this machine, and the round's wall time the
least convergence could take; `benchmarks/convergence.py` measures the real
thing against it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

import grpc

METHOD = "/floor.Floor/Stream"


def _message(size: int, fill: bytes = b"p") -> bytes:
    """A protobuf message (one bytes field) of about `size` bytes."""
    length, varint = size, bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            return b"\x0a" + bytes(varint) + fill * size


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    return time.process_time()  # this process, every thread (grpc's poller too)


async def _serve(conn: Connection, ready: Connection, size: int, port: int, share: bool) -> None:
    push = _message(size)
    # With --server-procs, every server process listens on one port (SO_REUSEPORT) and
    # the kernel spreads the connections over them, as Pilot workers would share theirs.
    server = grpc.aio.server(options=[("grpc.so_reuseport", int(share))])
    streams: list[asyncio.Queue[bytes]] = []
    pending: dict[str, Any] = {"left": 0, "done": None}

    async def stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        await context.read()  # the hello
        streams.append(queue)
        try:
            while True:
                await context.write(await queue.get())
                await context.read()
                pending["left"] -= 1
                if pending["left"] == 0:
                    pending["done"].set()
        finally:
            streams.remove(queue)

    handler = grpc.method_handlers_generic_handler(
        "floor.Floor",
        {
            "Stream": grpc.stream_stream_rpc_method_handler(
                stream, request_deserializer=None, response_serializer=None
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    ready.send(port)
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd == "count":
            conn.send(len(streams))
        elif cmd == "push":
            pending["left"] = len(streams)
            pending["done"] = asyncio.Event()
            cpu, t0 = _cpu_seconds(), time.perf_counter()
            for q in streams:
                q.put_nowait(push)
            if streams:
                await pending["done"].wait()
            conn.send((time.perf_counter() - t0, _cpu_seconds() - cpu, _rss_mb()))
        elif cmd == "stop":
            await server.stop(0)
            return


async def _clients(port: int, n: int, conn: Connection, ack_size: int) -> None:
    ack = _message(ack_size, b"a")
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(n)
    ]

    async def one(channel: grpc.aio.Channel) -> None:
        while True:  # a connection refused while thousands open is tried again
            try:
                call = channel.stream_stream(METHOD)()
                await call.write(b"")
                while await call.read() is not grpc.aio.EOF:
                    await call.write(ack)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(one(c)) for c in channels]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # stop
    for t in tasks:
        t.cancel()
    for c in channels:
        await c.close()


def _run(coro: Any) -> None:
    import uvloop

    uvloop.run(coro)


def _server_main(conn: Connection, ready: Connection, size: int, port: int, share: bool) -> None:
    _run(_serve(conn, ready, size, port, share))


def _clients_main(port: int, n: int, conn: Connection, ack_size: int) -> None:
    _run(_clients(port, n, conn, ack_size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument(
        "--size",
        type=int,
        default=120,
        help="bytes per push (120: an endpoint update; ~100,000: 1,000 services' routes)",
    )
    parser.add_argument(
        "--ack-size",
        type=int,
        default=60,
        help="bytes per ACK (60: a Delta ACK; ~48,000: a SotW ACK naming 1,000 clusters)",
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument(
        "--server-procs",
        type=int,
        default=1,
        help="server processes sharing the port, each serving the streams the kernel gives it",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    servers: list[tuple[mp.process.BaseProcess, Connection]] = []
    port = 0
    for _ in range(args.server_procs):
        control, server_end = ctx.Pipe()
        ready_parent, ready_child = ctx.Pipe()
        server = ctx.Process(
            target=_server_main,
            args=(server_end, ready_child, args.size, port, args.server_procs > 1),
            daemon=True,
        )
        server.start()
        port = ready_parent.recv()
        servers.append((server, control))

    def ask(cmd: str) -> list[Any]:
        for _, c in servers:
            c.send(cmd)
        return [c.recv() for _, c in servers]

    clients = []
    for i in range(args.client_procs):
        parent, child = ctx.Pipe()
        share = len(range(i, args.streams, args.client_procs))
        proc = ctx.Process(
            target=_clients_main, args=(port, share, child, args.ack_size), daemon=True
        )
        proc.start()
        clients.append((proc, parent))
    try:
        deadline = time.monotonic() + 120
        while True:
            counts = ask("count")
            if sum(counts) >= args.streams:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {sum(counts)} of {args.streams} streams connected")
            time.sleep(0.2)
        walls, cpus, rss = [], [], float("nan")
        for _ in range(args.rounds):
            answers = ask("push")  # (wall, cpu, rss) per server; the round ends with the last
            walls.append(max(a[0] for a in answers))
            cpus.append(sum(a[1] for a in answers))
            rss = sum(a[2] for a in answers)
            time.sleep(0.05)
    finally:
        for proc, c in clients:
            c.send("stop")
            proc.join(10)
        for _, c in servers:
            c.send("stop")
        for proc, _ in servers:
            proc.join(10)
    result = {
        "streams": args.streams,
        "bytes_per_push": args.size,
        "bytes_per_ack": args.ack_size,
        "rounds": args.rounds,
        "client_procs": args.client_procs,
        "server_procs": args.server_procs,
        "streams_per_server": counts,
        "wall_p50_ms": round(1000 * statistics.median(walls), 1),
        "wall_max_ms": round(1000 * max(walls), 1),
        "server_cpu_per_push_s": round(statistics.median(cpus), 3),
        "server_cpu_per_stream_us": round(1e6 * statistics.median(cpus) / args.streams, 1),
        "server_rss_mb": round(rss, 1),
    }
    if not args.json:
        print(f"{args.streams} streams, {args.rounds} rounds:")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
