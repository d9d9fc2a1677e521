"""`meshctl up` / `meshctl down`: the whole mesh as local processes, with a demo.

Consul (one server keeping its data under the state dir), Citadel, Pilot,
Galley, an ingress gateway and a bookinfo-like shop (productpage → details,
reviews v1/v2/v3 → ratings), each app with its Envoy sidecar and a workload
identity from Citadel. State (the CA, tokens, Consul's data, logs) lives under
one directory; Ctrl-C or `meshctl down` stops every process it started.

With `--ha`: three Consul servers (Raft), two Pilots and two Galleys, each told
every Consul server, and every sidecar told both Pilots: any one Consul server
and any one Pilot or Galley may die and the mesh goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import secrets
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import consul

from api.catalog import registration_payload
from api.gateway_api.translate import GATEWAY_LABEL
from meshctl.bootstrap import SidecarBootstrap, envoy_argv, render_yaml
from meshctl.procs import ConsulPorts, StartError, Supervisor, bin_path, free_port
from meshctl.registration import register, with_stats

__all__ = ["DemoWorkload", "Mesh", "run_down", "run_up"]

DEMO_DIR = Path(__file__).parent / "demo"
TRUST_DOMAIN = "cluster.local"


def _consul_ports(state: Path, servers: int = 1) -> list[ConsulPorts]:
    """Consul's ports: the ones of the last run when its data is kept (a server's Raft
    peer address includes its server port), else Consul's usual ones for the first."""
    saved = state / ("consul-ports.json" if servers == 1 else f"consul-ports-{servers}.json")
    if saved.exists():
        try:
            raw = json.loads(saved.read_text())
            return [ConsulPorts(**p) for p in (raw if isinstance(raw, list) else [raw])]
        except (ValueError, TypeError):
            pass  # unreadable: pick again
    first = ConsulPorts(
        http=_port_or_free(8500),
        grpc=_port_or_free(8502),
        dns=_port_or_free(8600),
        serf_lan=_port_or_free(8301),
        server=_port_or_free(8300),
    )
    ports = [first, *(ConsulPorts() for _ in range(servers - 1))]
    body = [dataclasses.asdict(p) for p in ports]
    saved.write_text(json.dumps(body[0] if servers == 1 else body))
    return ports


def _port_or_free(preferred: int) -> int:
    with socket.socket() as sock:
        # As servers bind: a port whose old connections linger in TIME_WAIT is still free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@dataclass
class DemoWorkload:
    service: str
    instance: str
    version: str
    upstreams: list[str] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)
    page: bool = False
    app_port: int = field(default_factory=free_port)
    inbound_port: int = field(default_factory=free_port)
    outbound_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)

    @property
    def service_account(self) -> str:
        return f"shop-{self.service}"


def demo_workloads() -> list[DemoWorkload]:
    return [
        DemoWorkload("details", "details-v1", "v1"),
        DemoWorkload("ratings", "ratings-v1", "v1"),
        DemoWorkload("reviews", "reviews-v1", "v1", attrs={"stars": "none"}),
        DemoWorkload("reviews", "reviews-v2", "v2", ["http://ratings:9080/"], {"stars": "black"}),
        DemoWorkload("reviews", "reviews-v3", "v3", ["http://ratings:9080/"], {"stars": "red"}),
        DemoWorkload(
            "productpage",
            "productpage-v1",
            "v1",
            ["http://details:9080/", "http://reviews:9080/"],
            page=True,
        ),
    ]


class Mesh:
    """The processes of a local mesh, started in order and stopped in reverse."""

    def __init__(
        self, state_dir: Path, report: Callable[[str], None] = print, ha: bool = False
    ) -> None:
        self.state = state_dir
        self.ha = ha
        self.report = report
        logs = state_dir / "logs"
        for old in logs.glob("*.log") if logs.exists() else []:
            old.unlink()
        self.sup = Supervisor(logs)
        (state_dir / "tokens").mkdir(parents=True, exist_ok=True)
        self.consul_servers = _consul_ports(state_dir, 3 if ha else 1)
        self.consul_ports = self.consul_servers[0]  # workloads register with this one
        replicas = 2 if ha else 1
        self.pilot_grpcs = [_port_or_free(15010), *(free_port() for _ in range(replicas - 1))]
        self.pilot_https = [_port_or_free(15014), *(free_port() for _ in range(replicas - 1))]
        self.galley_https = [_port_or_free(15080), *(free_port() for _ in range(replicas - 1))]
        self.pilot_grpc, self.pilot_http = self.pilot_grpcs[0], self.pilot_https[0]
        self.galley_http = self.galley_https[0]
        self.citadel_grpc = _port_or_free(15012)
        self.citadel_tls = _port_or_free(15013)
        self.citadel_http = _port_or_free(15016)
        self.gateway_port = _port_or_free(8080)
        self.gateway_admin = free_port()
        # The gateway's stats, which Galley's dashboard reads (it is in no catalog); None
        # when there is no gateway (--no-demo).
        self.gateway_stats: int | None = free_port()
        self.galley_token = state_dir / "galley-token"
        self.admin_token = state_dir / "citadel-admin-token"
        # Lets Galley's dashboard list Citadel's issued certificates, and nothing else.
        self.viewer_token = state_dir / "citadel-viewer-token"
        for path in (self.galley_token, self.admin_token, self.viewer_token):
            if not path.exists():
                _write_private(path, secrets.token_urlsafe(32))
        self._base_ids = iter(range(300, 10_000))

    @property
    def consul_addr(self) -> str:
        """Every Consul server, as Pilot and Galley take them (they fail over in turn)."""
        return ",".join(f"127.0.0.1:{p.http}" for p in self.consul_servers)

    @property
    def pilots(self) -> tuple[tuple[str, int], ...]:
        return tuple(("127.0.0.1", port) for port in self.pilot_grpcs)

    @staticmethod
    def _name(base: str, i: int) -> str:
        return base if i == 0 else f"{base}-{i + 1}"

    def _step(self, name: str, detail: str, start: Callable[[], None]) -> None:
        try:
            start()
        except StartError as err:
            self.report(f"  ✗ {name:<15} failed: {str(err).splitlines()[0]}")
            raise
        self.report(f"  ✓ {name:<15} {detail}")

    # --- control plane ---

    def start_control_plane(self) -> None:
        py = sys.executable

        def start_consul() -> None:
            # Servers with their data under the state dir, not -dev: applied config and
            # registrations survive a restart of Consul or of the whole `meshctl up`.
            for i, ports in enumerate(self.consul_servers):
                peers = [p for p in self.consul_servers if p is not ports]
                name = self._name("consul", i)
                data = self.state / self._name("consul-data", i)
                node = self._name("mesh-local", i)
                self.sup.start(name, ports.argv(bin_path("consul"), data, node=node, peers=peers))
            for i, ports in enumerate(self.consul_servers):
                self.sup.wait_http(
                    self._name("consul", i), f"http://127.0.0.1:{ports.http}/v1/status/leader"
                )
            client = consul.Consul(host="127.0.0.1", port=self.consul_ports.http)
            deadline = time.monotonic() + 60
            # A leader, then the agent's own node in the catalog: only then do checks
            # registered next reach the catalog at once (not at the next sync, a minute on).
            while time.monotonic() < deadline and not (
                client.status.leader() and client.catalog.node("mesh-local")[1]
            ):
                time.sleep(0.1)

        def start_citadel() -> None:
            self.sup.start(
                "citadel",
                [
                    py,
                    "-m",
                    "citadel",
                    f"--state-dir={self.state / 'citadel'}",
                    f"--trust-domain={TRUST_DOMAIN}",
                    f"--sds-addr=127.0.0.1:{self.citadel_grpc}",
                    f"--sds-tls-addr=127.0.0.1:{self.citadel_tls}",
                    f"--http-addr=127.0.0.1:{self.citadel_http}",
                    f"--admin-token-file={self.admin_token}",
                    f"--viewer-token-file={self.viewer_token}",
                    f"--consul-addr={self.consul_addr}",  # gateway credentials
                ],
            )
            self.sup.wait_http("citadel", f"http://127.0.0.1:{self.citadel_http}/healthz")

        def start_pilot(i: int) -> None:
            name = self._name("pilot", i)
            self.sup.start(
                name,
                [
                    py,
                    "-m",
                    "pilot",
                    f"--consul-addr={self._consul_addr_from(i)}",
                    f"--grpc-addr=127.0.0.1:{self.pilot_grpcs[i]}",
                    f"--http-addr=127.0.0.1:{self.pilot_https[i]}",
                    f"--trust-domain={TRUST_DOMAIN}",
                    "--access-log-file=/dev/stdout",
                ],
            )
            self.sup.wait_http(name, f"http://127.0.0.1:{self.pilot_https[i]}/healthz")

        def start_galley(i: int) -> None:
            name = self._name("galley", i)
            self.sup.start(
                name,
                [
                    py,
                    "-m",
                    "galley",
                    f"--consul-addr={self._consul_addr_from(i)}",
                    f"--http-addr=127.0.0.1:{self.galley_https[i]}",
                    f"--token-file={self.galley_token}",
                    "--pilot-http-addr="
                    + ",".join(f"127.0.0.1:{port}" for port in self.pilot_https),
                    # The dashboard: Citadel's issued certificates, the gateway's stats.
                    f"--citadel-http-addr=127.0.0.1:{self.citadel_http}",
                    f"--citadel-token-file={self.viewer_token}",
                    *(
                        [f"--stats-targets=ingressgateway=127.0.0.1:{self.gateway_stats}"]
                        if self.gateway_stats is not None
                        else []
                    ),
                ],
            )
            self.sup.wait_http(name, f"http://127.0.0.1:{self.galley_https[i]}/healthz")

        servers = ", ".join(f"http://127.0.0.1:{p.http}/ui" for p in self.consul_servers)
        self._step("consul", servers, start_consul)
        self._step(
            "citadel",
            f"SDS 127.0.0.1:{self.citadel_tls} (TLS), "
            f"metrics http://127.0.0.1:{self.citadel_http}/metrics",
            start_citadel,
        )
        for i, (grpc, http) in enumerate(zip(self.pilot_grpcs, self.pilot_https, strict=True)):
            self._step(
                self._name("pilot", i),
                f"xDS 127.0.0.1:{grpc}, http://127.0.0.1:{http}/debug/syncz",
                functools.partial(start_pilot, i),
            )
        for i, http in enumerate(self.galley_https):
            self._step(
                self._name("galley", i),
                f"http://127.0.0.1:{http}/docs",
                functools.partial(start_galley, i),
            )

    def _consul_addr_from(self, i: int) -> str:
        """Every Consul server, replica i starting with server i (so replicas spread)."""
        addrs = self.consul_addr.split(",")
        k = i % len(addrs)
        return ",".join(addrs[k:] + addrs[:k])

    # --- data plane ---

    def token_file(self, namespace: str, service_account: str, gateway: bool = False) -> Path:
        """A fresh token; with the gateway role it may also fetch the namespace's gateway
        credentials (a Gateway's credentialName) from Citadel."""
        path = self.state / "tokens" / f"{namespace}.{service_account}"
        with open(self.admin_token) as f:
            admin = f.read().strip()
        request = {"namespace": namespace, "serviceAccount": service_account, "ttlSeconds": 604800}
        if gateway:
            request["gateway"] = True
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.citadel_http}/v1/tokens",
            method="POST",
            data=json.dumps(request).encode(),
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            _write_private(path, json.loads(resp.read())["token"])
        return path

    def _envoy(
        self, name: str, spec: SidecarBootstrap, admin_port: int, ready: bool = True
    ) -> None:
        config = self.state / f"envoy-{name}.yaml"
        config.write_text(render_yaml(spec.build()))
        self.sup.start(
            f"envoy-{name}",
            envoy_argv(bin_path("envoy"), str(config), base_id=next(self._base_ids)),
        )
        self.sup.wait_http(
            f"envoy-{name}",
            f"http://127.0.0.1:{admin_port}/{'ready' if ready else 'server_info'}",
            timeout=30,
        )

    def _identity(
        self, sa: str, namespace: str = "default", gateway: bool = False
    ) -> tuple[str, str, str]:
        """(Citadel's TLS address, a fresh token file, the root bundle) for a workload."""
        return (
            f"127.0.0.1:{self.citadel_tls}",
            str(self.token_file(namespace, sa, gateway)),
            str(self.state / "citadel" / "root-cert.pem"),
        )

    def start_workload(self, w: DemoWorkload) -> None:
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
            "--proxy",
            f"http://127.0.0.1:{w.outbound_port}",
        ]
        for url in w.upstreams:
            argv += ["--upstream", url]
        for key, value in w.attrs.items():
            argv += ["--attr", f"{key}={value}"]
        if w.page:
            argv.append("--page")
        self.sup.start(f"app-{w.instance}", argv)
        self.sup.wait_http(f"app-{w.instance}", f"http://127.0.0.1:{w.app_port}/healthz")
        spec = SidecarBootstrap(
            pilots=self.pilots,
            service=w.service,
            namespace="default",
            node_id=w.instance,
            admin_port=w.admin_port,
            outbound_port=w.outbound_port,
            inbound_port=w.inbound_port,
            app_port=w.app_port,
            service_account=w.service_account,
            labels={"app": w.service, "version": w.version},
            stats_port=w.stats_port,
        )
        citadel, token, root = self._identity(w.service_account)
        spec = dataclasses.replace(
            spec, citadel_addr=citadel, token_file=token, root_cert_file=root
        )
        self._envoy(w.instance, spec, w.admin_port)
        register(
            "127.0.0.1",
            self.consul_ports.http,
            with_stats(
                registration_payload(
                    service=w.service,
                    instance_id=w.instance,
                    address="127.0.0.1",
                    port=w.inbound_port,
                    service_port=9080,
                    service_account=w.service_account,
                    labels={"app": w.service, "version": w.version},
                    check_http=f"http://127.0.0.1:{w.app_port}/healthz",
                    mtls=True,
                ),
                w.stats_port,  # Galley's dashboard reads the sidecar's traffic there
            ),
        )
        self._wait_passing(w.service, w.instance)

    def _wait_passing(self, service: str, instance: str, timeout: float = 30.0) -> None:
        """Ready means Consul lists the instance as passing, so Pilot routes to it."""
        client = consul.Consul(host="127.0.0.1", port=self.consul_ports.http)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, entries = client.health.service(service, passing=True)
            if any(e["Service"]["ID"] == instance for e in entries):
                return
            time.sleep(0.2)
        raise StartError(f"{instance} never passed its health check; see {self.sup.log_dir}")

    def start_gateway(self) -> None:
        spec = SidecarBootstrap(
            pilots=self.pilots,
            service="ingressgateway",
            namespace="istio-system",
            node_id="ingressgateway-1",
            admin_port=self.gateway_admin,
            # Istio Gateways select it by `istio`, a Gateway API Gateway by its name.
            labels={"istio": "ingressgateway", GATEWAY_LABEL: "ingressgateway"},
            kind="gateway",
            service_account="ingressgateway",
            stats_port=self.gateway_stats or free_port(),
        )
        citadel, token, root = self._identity("ingressgateway", "istio-system", gateway=True)
        spec = dataclasses.replace(
            spec, citadel_addr=citadel, token_file=token, root_cert_file=root
        )
        self._envoy("ingressgateway", spec, self.gateway_admin)

    def apply_demo_config(self) -> None:
        text = (
            (DEMO_DIR / "bookinfo.yaml").read_text().replace("GATEWAY_PORT", str(self.gateway_port))
        )
        with open(self.galley_token) as f:
            token = f.read().strip()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.galley_http}/v1/apply",
            data=text.encode(),
            method="POST",
            headers={
                "Content-Type": "application/yaml",
                "Authorization": f"Bearer {token}",
                "X-Source-Name": "demo/bookinfo.yaml",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def stop(self) -> None:
        self.sup.stop_all()


def _front_page(port: int, user: str | None = None) -> str:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/productpage", headers={"end-user": user} if user else {}
    )
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return str(resp.read().decode()) if resp.status == 200 else ""
    except OSError:
        return ""


def run_up(state_dir: str, demo: bool = True, ha: bool = False) -> int:
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    pid_file = state / "up.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), 0)
            print(
                f"meshctl up: already running (pid {pid_file.read_text().strip()}); "
                f"`meshctl down --state-dir {state_dir}` stops it",
                file=sys.stderr,
            )
            return 1
        except (OSError, ValueError):
            pid_file.unlink()
    pid_file.write_text(str(os.getpid()))
    mesh = Mesh(state, report=lambda line: print(line, flush=True), ha=ha)
    if not demo:
        mesh.gateway_stats = None
    stop = {"now": False}

    def on_signal(signum: int, _: FrameType | None) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        # First, before anything starts: where to watch it come up.
        print(f"meshctl up: dashboard http://127.0.0.1:{mesh.galley_http}/ui/", flush=True)
        print(f"meshctl up: state and logs in {state}", flush=True)
        mesh.start_control_plane()
        if demo:
            mesh._step(
                "ingressgateway", f"http://127.0.0.1:{mesh.gateway_port}", mesh.start_gateway
            )
            for w in demo_workloads():
                mesh._step(
                    w.instance,
                    f"app :{w.app_port}, sidecar :{w.inbound_port}, "
                    f"stats http://127.0.0.1:{w.stats_port}/stats/prometheus",
                    functools.partial(mesh.start_workload, w),
                )
            mesh.apply_demo_config()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "Book details" not in _front_page(
                mesh.gateway_port
            ):
                time.sleep(0.3)
            galley = f"--galley-addr 127.0.0.1:{mesh.galley_http} --token-file {mesh.galley_token}"
            print(
                f"\nThe shop, through the ingress gateway and the mesh (refresh a few times):\n"
                f"  http://127.0.0.1:{mesh.gateway_port}/productpage\n"
                f"  curl -H 'end-user: jason' http://127.0.0.1:{mesh.gateway_port}/productpage\n"
                f"\nChange it with Istio YAML (samples in {DEMO_DIR / 'samples'}):\n"
                f"  meshctl apply -f {DEMO_DIR / 'samples' / 'reviews-jason-v2.yaml'} {galley}\n"
                f"  meshctl proxy-status --pilot-http 127.0.0.1:{mesh.pilot_http}",
                flush=True,
            )
        print("\nCtrl-C (or `meshctl down`) stops everything.", flush=True)
        reported: set[str] = set()
        while not stop["now"]:
            for proc in list(mesh.sup.procs.values()):
                if not proc.alive() and proc.name not in reported:
                    print(
                        f"meshctl up: {proc.name} exited ({proc.popen.returncode}); "
                        f"see {proc.log_path}",
                        file=sys.stderr,
                        flush=True,
                    )
                    if not ha:
                        return 1
                    reported.add(proc.name)  # the replicas carry on
            time.sleep(0.5)
        return 0
    except StartError as err:
        print(f"meshctl up: {err}", file=sys.stderr)
        return 1
    finally:
        print("meshctl up: stopping", flush=True)
        mesh.stop()
        pid_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def run_down(state_dir: str, timeout: float = 30.0) -> int:
    pid_file = Path(state_dir).resolve() / "up.pid"
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        print(f"meshctl down: nothing running from {state_dir}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # `meshctl up` removes its pid file once every process it started is gone.
        if not pid_file.exists() or not _alive(pid):
            print("meshctl down: stopped")
            return 0
        time.sleep(0.2)
    print(f"meshctl down: pid {pid} still running after {timeout:.0f}s", file=sys.stderr)
    return 1
