"""`meshctl up`: a whole local mesh as plain processes, until Ctrl-C.

Consul (dev agent), Pilot, and a demo: `frontend` calling `backend` (two
instances, v1 and v2), each app with its Envoy sidecar, plus a client-only
sidecar for your curl. Logs go to <state-dir>/logs/.
"""

from __future__ import annotations

import secrets
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import consul

from api.catalog import registration_payload
from meshctl.bootstrap import SidecarBootstrap, render_yaml
from meshctl.procs import ConsulPorts, StartError, Supervisor, bin_path, free_port
from meshctl.registration import register

__all__ = ["DemoWorkload", "Mesh", "run_up"]


def _port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


@dataclass(frozen=True, slots=True)
class DemoWorkload:
    service: str
    instance: str
    labels: dict[str, str]
    app_port: int
    inbound_port: int
    outbound_port: int
    admin_port: int
    upstream: str | None = None


class Mesh:
    """The processes of a local mesh, started in order and stopped in reverse."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.sup = Supervisor(state_dir / "logs")
        self.consul_ports = ConsulPorts(http=_port_or_free(8500))
        self.pilot_grpc = _port_or_free(15010)
        self.pilot_http = _port_or_free(15014)
        self.galley_http = _port_or_free(15080)
        self.token_file = state_dir / "galley-token"
        self._base_ids = iter(range(100, 10_000))

    @property
    def consul_addr(self) -> str:
        return f"127.0.0.1:{self.consul_ports.http}"

    def start_control_plane(self) -> None:
        self.sup.start("consul", self.consul_ports.argv(bin_path("consul"), None))
        self.sup.wait_http("consul", f"http://{self.consul_addr}/v1/status/leader")
        deadline = time.monotonic() + 15
        client = consul.Consul(host="127.0.0.1", port=self.consul_ports.http)
        while not client.status.leader() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.sup.start(
            "pilot",
            [
                sys.executable,
                "-m",
                "pilot",
                f"--consul-addr={self.consul_addr}",
                f"--grpc-addr=127.0.0.1:{self.pilot_grpc}",
                f"--http-addr=127.0.0.1:{self.pilot_http}",
            ],
        )
        self.sup.wait_http("pilot", f"http://127.0.0.1:{self.pilot_http}/healthz")
        self.token_file.write_text(secrets.token_urlsafe(32))
        self.token_file.chmod(0o600)
        self.sup.start(
            "galley",
            [
                sys.executable,
                "-m",
                "galley",
                f"--consul-addr={self.consul_addr}",
                f"--http-addr=127.0.0.1:{self.galley_http}",
                f"--token-file={self.token_file}",
            ],
        )
        self.sup.wait_http("galley", f"http://127.0.0.1:{self.galley_http}/healthz")

    def start_sidecar(self, w: DemoWorkload, namespace: str = "default") -> None:
        spec = SidecarBootstrap(
            pilot_host="127.0.0.1",
            pilot_port=self.pilot_grpc,
            service=w.service,
            namespace=namespace,
            node_id=w.instance,
            admin_port=w.admin_port,
            outbound_port=w.outbound_port,
            inbound_port=w.inbound_port if w.app_port else None,
            app_port=w.app_port or None,
            labels=w.labels,
        )
        config = self.state_dir / f"envoy-{w.instance}.yaml"
        config.write_text(render_yaml(spec.build()))
        self.sup.start(
            f"envoy-{w.instance}",
            [
                bin_path("envoy"),
                "-c",
                str(config),
                "--base-id",
                str(next(self._base_ids)),
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "--drain-time-s",
                "1",
            ],
        )
        self.sup.wait_http(f"envoy-{w.instance}", f"http://127.0.0.1:{w.admin_port}/ready")

    def start_app(self, w: DemoWorkload) -> None:
        argv = [
            sys.executable,
            "-m",
            "meshctl.demo_app",
            "--service",
            w.service,
            "--instance",
            w.instance,
            "--port",
            str(w.app_port),
        ]
        if w.upstream:
            argv += ["--upstream", w.upstream, "--proxy", f"http://127.0.0.1:{w.outbound_port}"]
        self.sup.start(f"app-{w.instance}", argv)
        self.sup.wait_http(f"app-{w.instance}", f"http://127.0.0.1:{w.app_port}/healthz")

    def register(self, w: DemoWorkload, namespace: str = "default") -> None:
        body = registration_payload(
            service=w.service,
            instance_id=w.instance,
            address="127.0.0.1",
            port=w.inbound_port,
            namespace=namespace,
            labels=w.labels,
            check_http=f"http://127.0.0.1:{w.app_port}/healthz",
        )
        register("127.0.0.1", self.consul_ports.http, body)

    def stop(self) -> None:
        self.sup.stop_all()


def demo_workloads() -> list[DemoWorkload]:
    def w(service: str, instance: str, version: str, upstream: str | None = None) -> DemoWorkload:
        return DemoWorkload(
            service,
            instance,
            {"version": version},
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            upstream,
        )

    return [
        w("backend", "backend-v1", "v1"),
        w("backend", "backend-v2", "v2"),
        w("frontend", "frontend-v1", "v1", upstream="http://backend/"),
    ]


def run_up(state_dir: str, demo: bool = True) -> int:
    path = Path(state_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    mesh = Mesh(Path(tempfile.mkdtemp(prefix="run-", dir=path)))
    stop = {"now": False}

    def on_signal(signum: int, _: FrameType | None) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"meshctl up: logs in {mesh.sup.log_dir}", flush=True)
        mesh.start_control_plane()
        print(f"  consul  ready  http://{mesh.consul_addr}/ui", flush=True)
        print(
            f"  pilot   ready  xDS 127.0.0.1:{mesh.pilot_grpc}, "
            f"debug http://127.0.0.1:{mesh.pilot_http}/debug/syncz",
            flush=True,
        )
        print(
            f"  galley  ready  REST http://127.0.0.1:{mesh.galley_http}/docs, "
            f"write token in {mesh.token_file}",
            flush=True,
        )
        client_outbound = _port_or_free(15001)
        if demo:
            for w in demo_workloads():
                mesh.start_app(w)
                mesh.start_sidecar(w)
                mesh.register(w)
                print(
                    f"  {w.instance:<12} ready  app :{w.app_port}, sidecar in :{w.inbound_port} "
                    f"out :{w.outbound_port} admin :{w.admin_port}",
                    flush=True,
                )
            client = DemoWorkload("client", "client-1", {}, 0, 0, client_outbound, free_port())
            mesh.start_sidecar(client)
            print(
                f"  client sidecar ready  admin http://127.0.0.1:{client.admin_port}/clusters",
                flush=True,
            )
            deadline = time.monotonic() + 20
            url = f"http://127.0.0.1:{client_outbound}/"
            while time.monotonic() < deadline and not _through_mesh(url):
                time.sleep(0.2)
            print("\nThrough the mesh (client sidecar -> frontend -> backend v1/v2):")
            print(f"  curl -x http://127.0.0.1:{client_outbound} http://frontend/")
            print(f"  curl -H 'Host: backend' http://127.0.0.1:{client_outbound}/")
        print("\nChange routing (Istio YAML, validated by Galley, pushed by Pilot):")
        print(
            f"  meshctl apply -f my-virtualservice.yaml --galley-addr 127.0.0.1:{mesh.galley_http} "
            f"--token-file {mesh.token_file}"
        )
        print("\nCtrl-C stops everything.", flush=True)
        while not stop["now"]:
            for proc in list(mesh.sup.procs.values()):
                if not proc.alive():
                    print(
                        f"meshctl up: {proc.name} exited ({proc.popen.returncode}); "
                        f"see {proc.log_path}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
        return 0
    except StartError as err:
        print(f"meshctl up: {err}", file=sys.stderr)
        return 1
    finally:
        print("meshctl up: stopping", flush=True)
        mesh.stop()


def _through_mesh(proxy_url: str) -> bool:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy_url}))
    try:
        with opener.open("http://frontend/", timeout=2) as resp:
            return bool(resp.status == 200 and b'"backend"' in resp.read())
    except OSError:
        return False
