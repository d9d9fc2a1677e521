"""Starting and stopping the mesh's real processes: Consul, Pilot, Envoy, apps.

Used by `meshctl up` and by the end-to-end tests alike, so both run the same
topology the same way. Every process gets its own log file; `stop_all` ends
them all (SIGTERM, then SIGKILL), whatever state they are in.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ConsulPorts",
    "Proc",
    "StartError",
    "Supervisor",
    "bin_path",
    "free_port",
    "http_ok",
]


class StartError(RuntimeError):
    """A process did not start or become ready; the message names its log."""


def bin_path(name: str) -> str:
    """A tool from this venv's bin/ (envoy, consul), else from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise StartError(f"{name} not found in {here.parent} or on PATH; run scripts/setup.sh")
    return found


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    Ports the kernel hands to outgoing connections (the ephemeral range) can be
    taken between "free" and "bound"; ports below it are only ever taken by a
    listener that asks for them, so they stay free until ours binds.
    """
    low, _ = _ephemeral_range()
    top = max(low, 12_000)
    for _ in range(200):
        port = random.randrange(10_000, top)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # fall back to the kernel
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(200 <= resp.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _conns_per_client() -> int:
    """As many as the fd limit allows (raised to the hard limit; children inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return max(200, min(65_536, soft - 100))


@dataclass(frozen=True, slots=True)
class ConsulPorts:
    http: int = field(default_factory=free_port)
    grpc: int = field(default_factory=free_port)
    dns: int = field(default_factory=free_port)
    serf_lan: int = field(default_factory=free_port)
    server: int = field(default_factory=free_port)

    def argv(
        self,
        consul: str,
        data_dir: Path | None,
        *,
        node: str = "mesh-local",
        peers: Sequence[ConsulPorts] = (),
    ) -> list[str]:
        """A server agent on loopback. With a data dir it survives restarts; with peers it
        is one of a cluster of 1 + len(peers) servers that elect a leader among themselves
        (Raft: the catalog and the config survive the loss of any minority of them)."""
        if data_dir is None:
            mode = ["-dev"]
        else:
            mode = [
                "-server",
                f"-bootstrap-expect={1 + len(peers)}",
                f"-data-dir={data_dir}",
                "-ui",
                # Local servers: elect at once rather than at production pace.
                "-hcl=performance { raft_multiplier = 1 }",
                *(f"-retry-join=127.0.0.1:{p.serf_lan}" for p in peers),
            ]
        return [
            consul,
            "agent",
            *mode,
            "-bind=127.0.0.1",
            "-client=127.0.0.1",
            f"-node={node}",
            f"-http-port={self.http}",
            f"-grpc-port={self.grpc}",
            f"-dns-port={self.dns}",
            f"-serf-lan-port={self.serf_lan}",
            f"-server-port={self.server}",
            "-grpc-tls-port=-1",  # else every agent wants 8503 and a second one cannot start
            "-serf-wan-port=-1",
            "-log-level=warn",
            # Pilot keeps one blocking query per service open: lift the per-client cap.
            f"-hcl=limits {{ http_max_conns_per_client = {_conns_per_client()} }}",
        ]


@dataclass(slots=True)
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    """Owns a set of child processes; `stop_all` leaves none behind."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, Proc] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        if name in self.procs and self.procs[name].alive():
            raise StartError(f"{name} is already running")
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,  # Ctrl-C goes to us; we stop children in order
            )
        proc = Proc(name, list(argv), log_path, popen)
        self.procs[name] = proc
        return proc

    def wait_http(self, name: str, url: str, timeout: float = 30.0) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                rc = proc.popen.returncode
                raise StartError(f"{name} exited with {rc}; see {proc.log_path}:\n{proc.tail()}")
            if http_ok(url):
                return
            time.sleep(0.05)
        raise StartError(
            f"{name} not ready at {url} after {timeout:.0f}s; see {proc.log_path}:\n{proc.tail()}"
        )

    def stop(self, name: str, timeout: float = 5.0, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or not proc.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, sig)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(5)

    def kill(self, name: str) -> None:
        """Stop without a chance to clean up, as a crash would."""
        self.stop(name, timeout=5.0, sig=signal.SIGKILL)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
