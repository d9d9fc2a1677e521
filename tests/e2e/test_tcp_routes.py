"""TCP through the mesh on the wire: real Consul, real Envoy sidecars and gateway, Citadel.

- A TCP echo service (two versions, each an asyncio server that answers a client's
  first line with its version name, then echoes) behind sidecars with a mesh identity,
  registered with protocol `tcp`: their inbound listeners relay TCP behind STRICT mTLS.
- A client sidecar whose Sidecar resource gives it an egress listener on its own
  loopback bind:port for the echo host (Istio's model without traffic capture).
- A VirtualService `tcp` 80/20 split observed over 500 connections; AuthorizationPolicy
  on TCP: an ALLOW for another principal, an ALLOW that needs HTTP attributes (allows no
  connection) and a DENY close the connection before anything reaches the app.
- A gateway TCP server routed by a VirtualService `tcp` rule to the echo service.

Every step waits for Pilot's sync status (the proxy ACKed the new config), not a sleep.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshctl.procs import free_port
from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e

ECHO_HOST = "tcp-echo.default.svc.cluster.local"
ECHO_PORT = 9000  # the service port clients address


class EchoServer:
    """Answers the first line of each connection with its name, then echoes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines = 0  # first lines received: what reached the app
        self.port = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                if await reader.readline():
                    self.lines += 1
                    writer.write(f"{name}\n".encode())
                    await writer.drain()
                    while data := await reader.read(4096):
                        writer.write(data)
                        await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        async def start() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            self.loop.run_until_complete(start())
            self.loop.run_forever()
            self.server.close()
            self.loop.run_until_complete(self.server.wait_closed())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def hello(address: str, port: int) -> str:
    """The name the echo answers through `address:port`; "" when the connection is
    closed with no data."""
    try:
        with socket.create_connection((address, port), timeout=5) as s:
            s.sendall(b"hello\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except ConnectionResetError:
        return ""
    return data.decode().strip()


def synced(mesh: Mesh, proxy: str, kind: str) -> str:
    """The version of `kind` (lds, ecds, ...) the proxy ACKed, once it ACKed what it was
    last sent (else "")."""
    for p in mesh.pilot_json("/debug/syncz")["proxies"]:
        if p["proxy"] == proxy:
            watch = p["types"].get(kind, {})
            if watch.get("version_acked") and watch["version_acked"] == watch["version_sent"]:
                return str(watch["version_acked"])
    return ""


def converge(mesh: Mesh, text: str, *waits: tuple[str, str]) -> None:
    """Apply config; wait until each (proxy, kind) has ACKed a version other than before."""
    before = {w: synced(mesh, *w) for w in waits}
    mesh.apply(text)
    for w in waits:
        eventually(
            lambda w=w: (v := synced(mesh, *w)) != before[w] and v,
            timeout=30,
            what=f"{w[0]} ACKed new {w[1]}",
        )


@dataclass
class Env:
    mesh: Mesh
    client: Workload
    servers: list[Workload]
    echoes: dict[str, EchoServer]
    bind: str  # the client's egress listener for the echo host
    port: int
    gateway: Workload
    gateway_address: str
    gateway_port: int

    def hello(self) -> str:
        return hello(self.bind, self.port)

    def policy(self, text: str) -> None:
        converge(self.mesh, text, *((s.instance, "ecds") for s in self.servers))


def _loopback() -> str:
    return f"127.0.{200 + free_port() % 50}.{free_port() % 250 + 2}"


@pytest.fixture(scope="module")
def env(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = Path(tmp_path_factory.mktemp("tcp-routes"))
    echoes = {v: EchoServer(f"tcp-echo-{v}") for v in ("v1", "v2")}
    bind, port = _loopback(), free_port()
    gateway_address, gateway_port = _loopback(), free_port()
    with Mesh.running(workdir, envoy_bin, citadel=True) as mesh:
        try:
            servers = []
            for version, echo in echoes.items():
                w = Workload(
                    "tcp-echo",
                    f"tcp-echo-{version}",
                    "default",
                    {"app": "tcp-echo", "version": version},
                    app_port=echo.port,
                    service_account="tcp-echo",
                    identity_sa="tcp-echo",
                )
                mesh.start_sidecar(w)
                out = mesh.meshctl(
                    "register",
                    f"--consul-addr={mesh.agent_addr}",
                    "--service=tcp-echo",
                    "--namespace=default",
                    f"--id={w.instance}",
                    "--address=127.0.0.1",
                    f"--port={w.inbound_port}",
                    f"--service-port={ECHO_PORT}",
                    "--service-account=tcp-echo",
                    "--protocol=tcp",
                    "--mtls",
                    *(f"--label={k}={v}" for k, v in w.labels.items()),
                )
                assert out.returncode == 0, out.stderr
                servers.append(w)
            client = Workload(
                "tcp-client",
                "tcp-client",
                "default",
                {"app": "tcp-client"},
                service_account="tcp-client",
                identity_sa="tcp-client",
            )
            mesh.start_sidecar(client, inbound=False)
            gateway = mesh.gateway(
                "tcp-gateway", identity_sa="tcp-gateway", address=gateway_address
            )
            mesh.apply(base_config(bind, port, gateway_port))
            env = Env(
                mesh, client, servers, echoes, bind, port, gateway, gateway_address, gateway_port
            )
            eventually(
                lambda: env.hello() in ("tcp-echo-v1", "tcp-echo-v2"),
                timeout=30,
                what="the echo through the client's egress listener",
            )
            yield env
        finally:
            for echo in echoes.values():
                echo.close()


def base_config(bind: str, port: int, gateway_port: int) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: default}}
spec:
  mtls: {{mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo, namespace: default}}
spec:
  host: tcp-echo
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: tcp-client, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: tcp-client}}}}
  egress:
  - port: {{number: {port}, name: tcp-echo, protocol: TCP}}
    bind: {bind}
    hosts: [./{ECHO_HOST}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tcp-gateway, namespace: istio-system}}
spec:
  selector: {{istio: tcp-gateway}}
  servers:
  - port: {{number: {gateway_port}, name: tcp-echo, protocol: TCP}}
    hosts: ["*"]
"""


def test_tcp_through_both_sidecars_with_strict_mtls(env: Env) -> None:
    seen = {env.hello() for _ in range(20)}
    assert seen == {"tcp-echo-v1", "tcp-echo-v2"}, seen
    # The server sidecars take mutual TLS only: a plaintext client gets a TLS alert at
    # most, and nothing reaches the app.
    lines = sum(e.lines for e in env.echoes.values())
    for server in env.servers:
        assert "tcp-echo" not in hello("127.0.0.1", server.inbound_port)
    assert sum(e.lines for e in env.echoes.values()) == lines


@pytest.mark.compat
def test_virtual_service_tcp_split_80_20(env: Env) -> None:
    converge(
        env.mesh,
        f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{{port: {env.port}, sourceLabels: {{app: someone-else}}}}]
    route: [{{destination: {{host: tcp-echo, subset: v1}}}}]
  - match: [{{port: {env.port}}}]
    route:
    - {{destination: {{host: tcp-echo, subset: v1}}, weight: 80}}
    - {{destination: {{host: tcp-echo, subset: v2}}, weight: 20}}
""",
        (env.client.instance, "lds"),
    )
    n = 500
    seen: dict[str, int] = {}
    for _ in range(n):
        name = env.hello()
        seen[name] = seen.get(name, 0) + 1
    assert seen.get("tcp-echo-v1", 0) + seen.get("tcp-echo-v2", 0) == n, seen
    # 20 % of 500: 100 ± 4.5 standard deviations (one deviation: 8.9).
    assert 60 <= seen["tcp-echo-v2"] <= 140, seen


def test_gateway_tcp_server_routes_to_the_echo(env: Env) -> None:
    converge(
        env.mesh,
        f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo-gateway, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/tcp-gateway]
  tcp:
  - match: [{{port: {env.gateway_port}}}]
    route: [{{destination: {{host: {ECHO_HOST}, subset: v2, port: {{number: {ECHO_PORT}}}}}}}]
""",
        (env.gateway.instance, "lds"),
    )
    assert {hello(env.gateway_address, env.gateway_port) for _ in range(10)} == {"tcp-echo-v2"}


def _policy(name: str, spec: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{app: tcp-echo}}}}
{spec}
"""


def stat(w: Workload, name: str) -> int:
    """One counter from a sidecar's admin API (0 when Envoy has not created it)."""
    for line in w.admin(f"/stats?filter=^{name}$").splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def _denied(env: Env) -> int:
    """Connections the server sidecars' network RBAC filters have closed."""
    return sum(stat(w, "tcp.rbac.denied") for w in env.servers)


def _refused(env: Env) -> bool:
    """The client's connections are closed with no data by the servers' RBAC filters, and
    nothing reached the app."""
    lines, denied = sum(e.lines for e in env.echoes.values()), _denied(env)
    closed = all(env.hello() == "" for _ in range(5))
    return (
        closed
        and sum(e.lines for e in env.echoes.values()) == lines
        and (_denied(env) >= denied + 5)
    )


def test_authorization_on_tcp_fails_closed(env: Env) -> None:
    client = "cluster.local/ns/default/sa/tcp-client"
    rules = "  rules:\n  - from: [{{source: {{principals: [{}]}}}}]\n"
    modified = [stat(w, "listener_manager.listener_modified") for w in env.servers]
    # ALLOW for another principal: the client's connections are closed.
    env.policy(_policy("tcp-allow", rules.format("cluster.local/ns/default/sa/someone-else")))
    assert _refused(env)
    # ALLOW for the client, but only for GET requests: nothing on TCP has a method, so
    # the rule allows no connection (fail closed).
    env.policy(
        _policy("tcp-allow", rules.format(client) + "    to: [{operation: {methods: [GET]}}]\n")
    )
    assert _refused(env)
    # ALLOW for the client: served again, at its next connection.
    env.policy(_policy("tcp-allow", rules.format(client)))
    assert env.hello() in ("tcp-echo-v1", "tcp-echo-v2")
    # A DENY for the client on a path: TCP has no path, so it denies by who calls.
    env.policy(
        _policy(
            "tcp-deny",
            "  action: DENY\n"
            + rules.format(client)
            + "    to: [{operation: {paths: [/admin]}}]\n",
        )
    )
    assert _refused(env)
    # Policy travels over ECDS: no listener was replaced (nor drained) on the way.
    assert [stat(w, "listener_manager.listener_modified") for w in env.servers] == modified
    assert env.mesh.pilot_metric("pilot_xds_nacks_total") == 0
