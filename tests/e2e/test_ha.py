"""High availability: three Consul servers, two Pilots, two Galleys (marker: e2e).

The control plane is told every Consul server (`--consul-addr a,b,c`) and every
sidecar every Pilot (`--pilot-addr p1,p2`). Killing the Consul leader, and then
a Pilot, must not stop the mesh: traffic keeps flowing, config written through
a Galley whose first Consul is the dead leader still lands and is pushed, a
catalog change still reaches the sidecars, and nothing applied is lost.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import consul
import pytest

from meshctl.procs import ConsulPorts, bin_path
from tests.e2e.harness import Mesh, Workload, apply_through, eventually

pytestmark = pytest.mark.e2e

SERVERS = 3


class HaMesh(Mesh):
    """A Mesh whose Consul is a cluster of three servers on loopback."""

    def __init__(self, workdir: Path, envoy: str) -> None:
        super().__init__(workdir, envoy=envoy)
        self.servers = [ConsulPorts() for _ in range(SERVERS)]
        self.agent = 0  # the server workloads register with (never the one killed)

    def addr(self, i: int) -> str:
        return f"127.0.0.1:{self.servers[i].http}"

    def addrs(self, first: int) -> str:
        """Every server, starting with `first`."""
        order = [(first + k) % SERVERS for k in range(SERVERS)]
        return ",".join(self.addr(i) for i in order)

    @property
    def consul_addr(self) -> str:
        return self.addrs(0)

    @property
    def agent_addr(self) -> str:
        return self.addr(self.agent)

    def start_consul(self) -> None:
        for i, ports in enumerate(self.servers):
            peers = [p for p in self.servers if p is not ports]
            argv = ports.argv(
                bin_path("consul"), self.workdir / f"consul-{i}", node=f"server-{i}", peers=peers
            )
            self.sup.start(f"consul-{i}", argv)
        for i in range(SERVERS):
            self.sup.wait_http(f"consul-{i}", f"http://{self.addr(i)}/v1/status/leader")
        eventually(lambda: self.leader() is not None, 60, what="the servers elected a leader")
        for i in range(SERVERS):
            eventually(
                lambda i=i: self._client(i).catalog.node(f"server-{i}")[1],
                30,
                what=f"server-{i} in the catalog",
            )

    def _client(self, i: int) -> consul.Consul:
        return consul.Consul(host="127.0.0.1", port=self.servers[i].http)

    def leader(self, ask: int | None = None) -> int | None:
        """Which server leads, as server `ask` (or any live one) sees it."""
        for i in [ask] if ask is not None else range(SERVERS):
            if not self.sup.procs[f"consul-{i}"].alive():
                continue
            try:
                raw = self._client(i).status.leader()
            except (OSError, consul.ConsulException):
                continue
            port = int(raw.rpartition(":")[2]) if raw else 0
            return next((k for k, s in enumerate(self.servers) if s.server == port), None)
        return None


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[HaMesh]:
    m = HaMesh(tmp_path, envoy="envoy")  # failover is the control plane's: one Envoy is enough
    try:
        yield m
    finally:
        m.stop()


def _apply(mesh: HaMesh, galley_port: int, text: str) -> None:
    apply_through(f"127.0.0.1:{galley_port}", mesh.token, text)


def _route_to(version: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: {version}}}
"""


SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def _versions(mesh: HaMesh, client: Workload, n: int = 12) -> set[str]:
    seen = mesh.instances_seen(client, "reviews", n)
    return {name.rsplit("-", 1)[0] for name in seen}


def _stored(galley_port: int) -> set[str]:
    names = set()
    for plural in ("virtualservices", "destinationrules"):
        url = f"http://127.0.0.1:{galley_port}/apis/networking.istio.io/v1/{plural}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            names |= {f"{plural}/{i['metadata']['name']}" for i in json.load(resp)["items"]}
    return names


def test_mesh_survives_the_consul_leader_and_a_pilot(ha: HaMesh) -> None:
    ha.start_consul()
    leader = ha.leader()
    assert leader is not None
    ha.agent = (leader + 1) % SERVERS  # workloads register with a server that stays up
    # Pilot and Galley 1 use the leader first (the one about to die); the replicas another.
    ha.start_galley(consul_addr=ha.addrs(leader))
    galley_2 = ha.start_galley(replica=1, consul_addr=ha.addrs(ha.agent))
    ha.start_pilot(consul_addr=ha.addrs(leader))
    _, pilot_2_http = ha.start_pilot(replica=1, consul_addr=ha.addrs(ha.agent))

    ha.add("reviews", "v1-1", version="v1")
    ha.add("reviews", "v2-1", version="v2")
    client = ha.client("client")
    _apply(ha, ha.galley_http, SUBSETS + "---" + _route_to("v2"))
    eventually(lambda: _versions(ha, client) == {"v2"}, 30, what="routed to v2")

    # The leader dies (no graceful leave): the others elect a new one.
    ha.sup.kill(f"consul-{leader}")
    eventually(lambda: ha.leader(ha.agent) not in (None, leader), 60, what="a new consul leader")
    assert _versions(ha, client) == {"v2"}  # traffic never stopped
    # Galley 1's first Consul is dead: the write still lands, and Pilot 1 (also
    # watching the dead server first) fails over and pushes it.
    _apply(ha, ha.galley_http, _route_to("v1"))
    eventually(lambda: _versions(ha, client) == {"v1"}, 30, what="the new route after failover")
    dead = ha.addr(leader)
    for name in ("pilot", "galley"):
        log = (ha.workdir / "logs" / f"{name}.log").read_text()
        assert f"consul at {dead} failed" in log, name
    ha.add("reviews", "v1-2", version="v1")
    eventually(
        lambda: set(ha.instances_seen(client, "reviews", 20)) == {"v1-1", "v1-2"},
        30,
        what="a catalog change after the leader died",
    )

    # Now a Pilot dies: each Envoy reconnects to the other one.
    ha.sup.kill("pilot")
    _apply(ha, galley_2, _route_to("v2"))
    eventually(lambda: _versions(ha, client) == {"v2"}, 30, what="pushed by the other Pilot")
    with urllib.request.urlopen(f"http://127.0.0.1:{pilot_2_http}/debug/syncz", timeout=5) as r:
        assert "client" in {p["proxy"] for p in json.load(r)["proxies"]}
    assert _stored(galley_2) == {"virtualservices/reviews", "destinationrules/reviews"}
    assert _stored(ha.galley_http) == _stored(galley_2)
