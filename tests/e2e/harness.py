"""A real mesh for end-to-end tests: Consul agent, Pilot, Envoy sidecars, demo apps.

Everything is a real process on free loopback ports, started through the same
`meshctl.procs.Supervisor` that `meshctl up` uses, and registered with the
real `meshctl register`. `stop()` ends every process, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import consul

from meshctl.bootstrap import DRAIN_ARGS, envoy_argv
from meshctl.procs import ConsulPorts, Supervisor, bin_path, free_port

T = TypeVar("T")


def eventually(
    check: Callable[[], T], timeout: float = 15.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll until check() returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError, KeyError, AssertionError) as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what or check} (last: {last!r})")
        time.sleep(interval)


@dataclass
class Workload:
    service: str
    instance: str
    namespace: str
    labels: dict[str, str]
    app_port: int = field(default_factory=free_port)
    inbound_port: int = field(default_factory=free_port)
    outbound_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    service_account: str = "default"
    identity_sa: str | None = None  # the identity its token proves (None: no mesh identity)
    xds_tls: bool = False  # talk to Pilot over TLS, verifying its SPIFFE identity

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as resp:
            return resp.read().decode()

    def filter_configs(self) -> str:
        """The ECDS filter configs this Envoy has in force (its admin config dump, as JSON)."""
        return self.admin("/config_dump?resource=ecds_filters")


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str]

    @property
    def instance(self) -> str | None:
        return self.body.get("instance") if isinstance(self.body, dict) else None


def apply_through(galley: str, token: str, text: str) -> subprocess.CompletedProcess[str]:
    """`meshctl apply -f -` against the Galley at HOST:PORT, asserting success."""
    out = subprocess.run(
        [bin_path("meshctl"), "apply", "-f", "-", f"--galley-addr={galley}", f"--token={token}"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out


class Mesh:
    @classmethod
    @contextlib.contextmanager
    def running(
        cls, workdir: Path, envoy: str, *, citadel: bool = False, **kwargs: Any
    ) -> Iterator[Mesh]:
        """Consul, Galley and Pilot (and Citadel) started; everything stopped on exit,
        whatever happened."""
        mesh = cls(workdir, envoy=envoy, **kwargs)
        try:
            mesh.start_consul()
            if citadel:
                mesh.start_citadel()
            mesh.start_galley()
            mesh.start_pilot()
            yield mesh
        finally:
            mesh.stop()

    def __init__(
        self,
        workdir: Path,
        envoy: str = "envoy",
        persistent_consul: bool = False,
        delta: bool = True,
        drain_args: Sequence[str] = DRAIN_ARGS,
    ) -> None:
        self.delta = delta  # sidecars use incremental xDS (the default) or, if not, SotW
        self.drain_args = drain_args  # how Envoy drains a replaced listener
        self.workdir = workdir
        self.envoy = bin_path(envoy)
        self.sup = Supervisor(workdir / "logs")
        self.consul_ports = ConsulPorts()
        self.consul_data = workdir / "consul-data" if persistent_consul else None
        self.pilot_grpc = free_port()
        self.pilot_http = free_port()
        self.pilot_replicas: list[int] = []  # xDS ports of more Pilots; sidecars list them all
        self.pilot_tls = free_port()
        self.galley_http = free_port()
        self.citadel_grpc, self.citadel_tls, self.citadel_http = (
            free_port(),
            free_port(),
            free_port(),
        )
        self.citadel_state = workdir / "citadel"
        self.token = "test-token-" + str(free_port())
        self.workloads: dict[str, Workload] = {}
        self._base_id = 1000 + (free_port() % 50_000)

    # --- control plane ---

    @property
    def consul_addr(self) -> str:
        return f"127.0.0.1:{self.consul_ports.http}"

    @property
    def agent_addr(self) -> str:
        """The Consul agent workloads register with, and tests read the catalog from."""
        return self.consul_addr

    def consul(self) -> consul.Consul:
        host, _, port = self.agent_addr.rpartition(":")
        return consul.Consul(host=host, port=int(port))

    def start_consul(self) -> None:
        self.sup.start("consul", self.consul_ports.argv(bin_path("consul"), self.consul_data))
        self.sup.wait_http("consul", f"http://{self.consul_addr}/v1/status/leader")
        eventually(lambda: self.consul().status.leader(), 30, what="consul has a leader")
        # A leader is not yet a working catalog: wait until the agent has synced its own
        # node, or a check registered now may reach the catalog only a minute later.
        eventually(
            lambda: self.consul().catalog.node("mesh-local")[1], 30, what="consul catalog ready"
        )

    def start_pilot(
        self,
        tls: bool = False,
        extra_args: tuple[str, ...] = (),
        replica: int = 0,
        consul_addr: str | None = None,
    ) -> tuple[int, int]:
        """Pilot; with tls=True it also serves xDS over TLS with a cert from Citadel,
        obtained the user's way (`meshctl token` + `meshctl cert`). A replica > 0 is one
        more Pilot on ports of its own, which sidecars started afterwards list too.
        Returns its (xDS, HTTP) ports."""
        grpc, http = (
            (self.pilot_grpc, self.pilot_http) if not replica else (free_port(), free_port())
        )
        extra: list[str] = []
        if tls:
            certs = self.workdir / "pilot-certs"
            out = self.meshctl(
                "cert",
                f"--citadel-addr=127.0.0.1:{self.citadel_grpc}",
                f"--token-file={self.token_file('mesh-system', 'pilot')}",
                f"--out-dir={certs}",
            )
            assert out.returncode == 0, out.stderr
            extra = [
                f"--tls-grpc-addr=127.0.0.1:{self.pilot_tls}",
                f"--tls-cert-file={certs / 'cert-chain.pem'}",
                f"--tls-key-file={certs / 'key.pem'}",
            ]
        name = f"pilot-{replica}" if replica else "pilot"
        self.sup.start(
            name,
            [
                sys.executable,
                "-m",
                "pilot",
                f"--consul-addr={consul_addr or self.consul_addr}",
                f"--grpc-addr=127.0.0.1:{grpc}",
                f"--http-addr=127.0.0.1:{http}",
                "--debounce-quiet=0.05",
                "--debounce-max=0.5",
                "--log-level=DEBUG",
                *extra,
                *extra_args,
            ],
        )
        self.sup.wait_http(name, f"http://127.0.0.1:{http}/ready")
        if replica:
            self.pilot_replicas.append(grpc)
        return grpc, http

    def start_galley(self, replica: int = 0, consul_addr: str | None = None) -> int:
        """Galley (a replica > 0 on a port of its own); returns its HTTP port."""
        http = free_port() if replica else self.galley_http
        name = f"galley-{replica}" if replica else "galley"
        self.sup.start(
            name,
            [
                sys.executable,
                "-m",
                "galley",
                f"--consul-addr={consul_addr or self.consul_addr}",
                f"--http-addr=127.0.0.1:{http}",
                f"--pilot-http-addr=127.0.0.1:{self.pilot_http}",  # plans, Envoy's check
            ],
            env={"GALLEY_TOKEN": self.token},
        )
        self.sup.wait_http(name, f"http://127.0.0.1:{http}/healthz")
        return http

    def start_citadel(self, ttl_seconds: int = 86_400) -> None:
        self.sup.start(
            "citadel",
            [
                sys.executable,
                "-m",
                "citadel",
                f"--state-dir={self.citadel_state}",
                f"--sds-addr=127.0.0.1:{self.citadel_grpc}",
                f"--sds-tls-addr=127.0.0.1:{self.citadel_tls}",
                f"--http-addr=127.0.0.1:{self.citadel_http}",
                f"--workload-ttl-seconds={ttl_seconds}",
                f"--consul-addr={self.consul_addr}",  # where gateway credentials are kept
            ],
            env={"CITADEL_ADMIN_TOKEN": self.token},
        )
        self.sup.wait_http("citadel", f"http://127.0.0.1:{self.citadel_http}/healthz")

    def citadel_admin_args(self) -> list[str]:
        """How meshctl reaches Citadel with the admin credential (token, secret commands)."""
        admin = self.workdir / "admin-token"
        if not admin.exists():
            admin.write_text(self.token)
            admin.chmod(0o600)
        return [f"--citadel-http=127.0.0.1:{self.citadel_http}", f"--admin-token-file={admin}"]

    def token_file(self, namespace: str, service_account: str, gateway: bool = False) -> Path:
        """A workload token minted with `meshctl token` (the admin credential), written 0600;
        a gateway's carries the gateway role, which may fetch its namespace's credentials."""
        path = self.workdir / f"token-{namespace}-{service_account}{'-gw' if gateway else ''}"
        if not path.exists():
            out = self.meshctl(
                "token",
                *self.citadel_admin_args(),
                f"--namespace={namespace}",
                f"--service-account={service_account}",
                f"--output={path}",
                *(["--gateway"] if gateway else []),
            )
            assert out.returncode == 0, out.stderr
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        return path

    def galley_args(self) -> list[str]:
        return [f"--galley-addr=127.0.0.1:{self.galley_http}", f"--token={self.token}"]

    def apply(self, text: str) -> subprocess.CompletedProcess[str]:
        """meshctl apply -f - (asserting success)."""
        return apply_through(f"127.0.0.1:{self.galley_http}", self.token, text)

    def start(self) -> Mesh:
        self.start_consul()
        self.start_pilot()
        return self

    def stop(self) -> None:
        self.sup.stop_all()

    def pilot_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.pilot_http}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def pilot_metric(self, name: str) -> float:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.pilot_http}/metrics", timeout=5
        ) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    # --- workloads ---

    def meshctl(
        self, *args: str, stdin_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [bin_path("meshctl"), *args],
            input=stdin_text,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def register(self, w: Workload, check: bool = True, zone: str | None = None) -> None:
        """Register `w`; with a zone, its locality is `<Consul datacenter>/<zone>`."""
        args = [
            "register",
            f"--consul-addr={self.agent_addr}",
            f"--service={w.service}",
            f"--namespace={w.namespace}",
            f"--id={w.instance}",
            "--address=127.0.0.1",
            f"--port={w.inbound_port}",
            "--service-port=9080",
            f"--service-account={w.service_account}",
        ]
        args += [f"--label={k}={v}" for k, v in w.labels.items()]
        if w.identity_sa is not None:
            args.append("--mtls")
        if zone is not None:
            args.append(f"--zone={zone}")
        if check:
            args += [f"--check-http=http://127.0.0.1:{w.app_port}/healthz", "--check-interval=1s"]
        out = self.meshctl(*args)
        assert out.returncode == 0, out.stderr
        if check:  # Consul marks a new check critical until it first passes
            eventually(
                lambda: any(
                    e["Service"]["ID"] == w.instance
                    for e in self.consul().health.service(w.service, passing=True)[1]
                ),
                what=f"{w.instance} passing in consul",
            )

    def deregister(self, w: Workload) -> None:
        out = self.meshctl("deregister", f"--consul-addr={self.agent_addr}", f"--id={w.instance}")
        assert out.returncode == 0, out.stderr

    def start_app(self, w: Workload, upstream: str | None = None) -> None:
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
        if upstream:
            argv += ["--upstream", upstream, "--proxy", f"http://127.0.0.1:{w.outbound_port}"]
        self.sup.start(f"app-{w.instance}", argv)
        self.sup.wait_http(f"app-{w.instance}", f"http://127.0.0.1:{w.app_port}/healthz")

    def _run_envoy(self, w: Workload, config: Path) -> None:
        self._base_id += 1
        name = f"envoy-{w.instance}"
        self.sup.start(
            name,
            envoy_argv(
                self.envoy,
                str(config),
                base_id=self._base_id,
                log_level="info",
                drain=self.drain_args,
            ),
        )
        self.sup.wait_http(name, f"http://127.0.0.1:{w.admin_port}/ready", timeout=30)

    def start_sidecar(self, w: Workload, inbound: bool = True, locality: str | None = None) -> None:
        """`locality`: the proxy's `region/zone[/subzone]`, its node locality."""
        pilots = [self.pilot_tls] if w.xds_tls else [self.pilot_grpc, *self.pilot_replicas]
        args = [
            "bootstrap",
            "--pilot-addr=" + ",".join(f"127.0.0.1:{p}" for p in pilots),
            f"--service={w.service}",
            f"--namespace={w.namespace}",
            f"--id={w.instance}",
            f"--admin-port={w.admin_port}",
            f"--outbound-port={w.outbound_port}",
            f"--stats-port={w.stats_port}",
        ]
        args.append("--delta" if self.delta else "--sotw")
        if locality is not None:
            flags = ("--region", "--zone", "--subzone")
            args += [f"{f}={p}" for f, p in zip(flags, locality.split("/"), strict=False)]
        if inbound:
            args += [f"--inbound-port={w.inbound_port}", f"--app-port={w.app_port}"]
        args += [f"--label={k}={v}" for k, v in w.labels.items()]
        if w.identity_sa is not None:
            args += [
                f"--service-account={w.identity_sa}",
                f"--citadel-addr=127.0.0.1:{self.citadel_tls}",
                f"--token-file={self.token_file(w.namespace, w.identity_sa)}",
                f"--root-cert={self.citadel_state / 'root-cert.pem'}",
            ]
        if w.xds_tls:
            args += ["--pilot-tls", f"--root-cert={self.citadel_state / 'root-cert.pem'}"]
        config = self.workdir / f"envoy-{w.instance}.yaml"
        out = self.meshctl(*args, f"--output={config}")
        assert out.returncode == 0, out.stderr
        self._run_envoy(w, config)

    def add(
        self,
        service: str,
        instance: str,
        *,
        namespace: str = "default",
        version: str = "v1",
        upstream: str | None = None,
        register: bool = True,
        sidecar: bool = True,
        service_account: str | None = None,
        identity: str | None = None,
    ) -> Workload:
        """An app with its sidecar, registered in the catalog. With a service account the
        sidecar gets a mesh identity from Citadel (its token proves `identity`, by default
        that same service account)."""
        w = Workload(
            service,
            instance,
            namespace,
            {"version": version},
            service_account=service_account or "default",
            identity_sa=(identity or service_account) if service_account else None,
        )
        self.workloads[instance] = w
        self.start_app(w, upstream)
        if sidecar:
            self.start_sidecar(w)
        if register:
            self.register(w)
        return w

    def gateway(
        self,
        name: str,
        namespace: str = "istio-system",
        identity_sa: str | None = None,
        address: str = "127.0.0.1",
        instance: str | None = None,
    ) -> Workload:
        """An ingress gateway proxy labelled istio=<name>; Gateways choose its ports, and it
        listens on `address`. With `identity_sa` it gets a mesh identity and its
        namespace's credentials from Citadel."""
        w = Workload(
            f"{name}",
            instance or f"{name}-1",
            namespace,
            {"istio": name},
            service_account=identity_sa or "default",
            identity_sa=identity_sa,
        )
        self.workloads[w.instance] = w
        config = self.workdir / f"envoy-{w.instance}.yaml"
        args = [
            "bootstrap",
            f"--pilot-addr=127.0.0.1:{self.pilot_grpc}",
            f"--service={name}",
            f"--namespace={namespace}",
            f"--id={w.instance}",
            f"--admin-port={w.admin_port}",
            f"--gateway={name}",
            f"--address={address}",
            f"--output={config}",
        ]
        if identity_sa is not None:
            args += [
                f"--service-account={identity_sa}",
                f"--citadel-addr=127.0.0.1:{self.citadel_tls}",
                f"--token-file={self.token_file(namespace, identity_sa, gateway=True)}",
                f"--root-cert={self.citadel_state / 'root-cert.pem'}",
            ]
        out = self.meshctl(*args)
        assert out.returncode == 0, out.stderr
        self._run_envoy(w, config)
        return w

    def client(
        self,
        name: str,
        namespace: str = "default",
        service_account: str | None = None,
        xds_tls: bool = False,
        locality: str | None = None,
    ) -> Workload:
        """A sidecar with no app behind it: where tests send requests from (`locality`:
        its node's `region/zone[/subzone]`)."""
        w = Workload(
            name,
            name,
            namespace,
            {},
            service_account=service_account or "default",
            identity_sa=service_account,
            xds_tls=xds_tls,
        )
        self.workloads[name] = w
        self.start_sidecar(w, inbound=False, locality=locality)
        return w

    # --- traffic ---

    @staticmethod
    def request(
        port: int, host: str, path: str = "/", proxy_form: bool = False, timeout: float = 5.0
    ) -> Reply:
        if proxy_form:
            opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"})
            )
            req = urllib.request.Request(f"http://{host}{path}")
        else:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
        try:
            with opener.open(req, timeout=timeout) as resp:
                status, raw, headers = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            status, raw, headers = err.code, err.read(), dict(err.headers)
        text = raw.decode(errors="replace")
        try:
            body: dict[str, Any] | str = json.loads(text)
        except ValueError:
            body = text
        return Reply(status, body, headers)

    def instances_seen(self, client: Workload, host: str, n: int = 20) -> dict[str, int]:
        seen: dict[str, int] = {}
        for _ in range(n):
            reply = self.request(client.outbound_port, host)
            key = reply.instance or f"status-{reply.status}"
            seen[key] = seen.get(key, 0) + 1
        return seen
