"""`docker-compose up` for real (marker: compose; needs root, a few minutes the first time).

scripts/docker-setup.sh installs Debian's docker.io and docker-compose, starts a
private dockerd (no IP forwarding, no masquerading, DOCKER-USER dropping the
external interface) and makes every image the compose file names without an
image registry. Then the unchanged docker-compose.yml comes up and is used as a
user would: the shop through the gateway, a canary applied through Galley, STRICT
mutual TLS, a container killed and started again, and `down -v` leaving nothing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import consul
import pytest

from meshctl.procs import free_port
from tests.e2e.harness import apply_through, eventually

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "docker-setup.sh"
COMPOSE = "/usr/bin/docker-compose"
DOCKER = "/usr/bin/docker"


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    gateway: int
    galley: int
    consul: int
    galley_token: str

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = [COMPOSE, "-p", self.project, "-f", str(ROOT / "docker-compose.yml"), *args]
        return _run(cmd, self.env, timeout)

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([DOCKER, *args], self.env, 120)

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def python_in(self, service: str, code: str) -> subprocess.CompletedProcess[str]:
        """Run Python code inside one of the stack's containers."""
        return subprocess.run(
            [DOCKER, "exec", self.container(service), "python", "-c", code],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def apply(self, text: str) -> None:
        apply_through(f"127.0.0.1:{self.galley}", self.galley_token, text)

    def reviews(self, n: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(n):
            try:
                url = f"http://127.0.0.1:{self.gateway}/productpage"
                with urllib.request.urlopen(url, timeout=10) as resp:
                    found = re.search(r"Reviews: (reviews-v\d)", resp.read().decode())
                    seen[found.group(1) if found else "none"] += 1
            except (urllib.error.URLError, OSError) as err:
                seen[f"error: {err}"] += 1
        return seen

    def galley_json(self, path: str) -> dict[str, Any]:
        """A read from outside the containers: Galley asks for its token."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.galley}{path}",
            headers={"Authorization": f"Bearer {self.galley_token}"},
        )
        with urllib.request.urlopen(req, timeout=15) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def catalog_ids(self, service: str, passing: bool = True) -> set[str]:
        client = consul.Consul(host="127.0.0.1", port=self.consul)
        _, entries = client.health.service(service, passing=passing)
        return {e["Service"]["ID"] for e in entries}


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("the compose test starts its own dockerd: it needs root and apt")
    setup = subprocess.run(
        ["bash", str(SETUP), "all"], capture_output=True, text=True, timeout=1500
    )
    assert setup.returncode == 0, setup.stderr[-5000:]
    exports = re.search(r"export (.+)", setup.stdout)
    assert exports is not None, setup.stdout
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in exports.group(1).split())
    sock = env["DOCKER_HOST"].removeprefix("unix://")
    s = Stack(
        project=f"meshe2e{secrets.token_hex(3)}",
        env=env,
        gateway=free_port(),
        galley=free_port(),
        consul=free_port(),
        galley_token=secrets.token_urlsafe(16),
    )
    env.update(
        DOCKER_SOCK=sock,
        MESH_GATEWAY_PORT=str(s.gateway),
        MESH_GALLEY_PORT=str(s.galley),
        MESH_CONSUL_PORT=str(s.consul),
        MESH_PILOT_PORT=str(free_port()),
        MESH_CITADEL_PORT=str(free_port()),
        MESH_GALLEY_TOKEN=s.galley_token,
        MESH_ADMIN_TOKEN=secrets.token_urlsafe(16),
    )
    try:
        s.compose("up", "-d")
        yield s
    finally:
        subprocess.run(
            [COMPOSE, "-p", s.project, "-f", str(ROOT / "docker-compose.yml"), "down", "-v"],
            env=env,
            capture_output=True,
            timeout=300,
        )
        stop = subprocess.run(["bash", str(SETUP), "stop"], capture_output=True, text=True)
        assert stop.returncode == 0, stop.stderr[-3000:]


def test_containers_reach_nothing_outside(stack: Stack) -> None:
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    rules = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True)
    assert "meshpy-docker" in rules.stdout and "-j DROP" in rules.stdout, rules.stdout
    gateway = subprocess.run(
        ["ip", "-4", "route", "show", "default"], capture_output=True, text=True
    )
    via = gateway.stdout.split()[2] if gateway.stdout.split()[:2] == ["default", "via"] else ""
    connect = "import socket; socket.create_connection(({!r}, {}), timeout=3)"
    # A neighbour on the compose network answers (the probe itself works) ...
    inside = stack.python_in("pilot", connect.format("consul", 8500))
    assert inside.returncode == 0, inside.stderr
    if via:  # ... the machine's default gateway does not.
        outside = stack.python_in("pilot", connect.format(via, 443))
        assert outside.returncode != 0 and "socket" in outside.stderr.lower(), outside


def test_the_shop_answers_through_the_gateway_with_all_three_reviews(stack: Stack) -> None:
    eventually(
        lambda: {"reviews-v1", "reviews-v2", "reviews-v3"} <= set(stack.reviews(30)),
        timeout=240,
        interval=2,
        what="the shop with reviews v1, v2 and v3",
    )
    # Only the six apps that opt in are in the catalog: no Consul, no stray image services.
    client = consul.Consul(host="127.0.0.1", port=stack.consul)
    names = set(client.catalog.services()[1]) - {"consul"}
    assert names == {"details", "ratings", "reviews", "productpage"}, names
    assert len(stack.catalog_ids("reviews")) == 3


CANARY = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v3}, weight: 10}
"""


def test_a_canary_applied_through_galley_shows_on_the_wire(stack: Stack) -> None:
    stack.apply(CANARY)
    eventually(
        lambda: set(stack.reviews(20)) == {"reviews-v1", "reviews-v3"},
        timeout=60,
        what="only v1 and v3 serve",
    )
    split = stack.reviews(200)
    assert set(split) == {"reviews-v1", "reviews-v3"}, split
    assert 160 <= split["reviews-v1"] <= 196, split


def test_the_dashboard_shows_the_canary_and_every_proxy_in_sync(stack: Stack) -> None:
    """Galley scrapes the sidecars' stats across the compose network (their ports come
    from the registrator's meta): the canary's two subsets show as two edges."""

    def versions() -> set[str]:
        stack.reviews(10)  # calls within the dashboard's one-minute window
        graph = stack.galley_json("/v1/dashboard/graph")
        return {
            e["destination_version"]
            for e in graph["edges"]
            if (e["source"], e["destination"]) == ("productpage.default", "reviews.default")
        }

    eventually(lambda: versions() == {"v1", "v3"}, timeout=120, interval=2, what="v1, v3 edges")

    def in_sync() -> dict[str, set[str]] | None:
        proxies = stack.galley_json("/v1/dashboard/proxies")["proxies"]
        states = {p["proxy"]: {t["state"] for t in p["types"].values()} for p in proxies}
        services = {p["service"] for p in proxies}
        if services >= {"productpage", "reviews", "ratings", "details"} and all(
            s == {"SYNCED"} for s in states.values()
        ):
            return states
        return None

    eventually(in_sync, timeout=60, interval=2, what="every proxy SYNCED on the dashboard")


def test_strict_mutual_tls_between_containers(stack: Stack) -> None:
    assert not plaintext_refused(stack)  # PERMISSIVE until a policy says otherwise
    stack.apply(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"
    )
    # Plain HTTP into a sidecar is refused once STRICT is in force ...
    eventually(lambda: plaintext_refused(stack), timeout=60, what="plaintext refused")
    # ... while the shop, all mutual TLS between sidecars, still answers with both canary
    # subsets (v3 gets 10 %: twenty requests miss it one time in eight, so sample until
    # both answered), and the health checks (on the apps' own ports) still pass.
    eventually(
        lambda: set(stack.reviews(20)) == {"reviews-v1", "reviews-v3"},
        timeout=60,
        what="v1 and v3 both answer over mutual TLS",
    )
    assert len(stack.catalog_ids("reviews")) == 3


def plaintext_refused(stack: Stack) -> bool:
    """A plain HTTP request from another container into reviews-v1's sidecar fails."""
    url = "http://reviews-v1:15006/healthz"
    code = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3)"
    out = stack.python_in("pilot", code)
    assert "No such container" not in out.stderr, out.stderr
    return out.returncode != 0


def test_a_killed_container_leaves_the_catalog_and_returns(stack: Stack) -> None:
    before = stack.catalog_ids("reviews")
    (gone,) = [i for i in before if "reviews-v1" in i]
    stack.docker("kill", stack.container("reviews-v1"))
    eventually(
        lambda: gone not in stack.catalog_ids("reviews", passing=False),
        timeout=60,
        what="the killed container deregistered",
    )
    stack.docker("start", stack.container("reviews-v1"))
    # The sidecar shares the app's network namespace: it restarts with its app.
    stack.docker("restart", stack.container("reviews-v1-sidecar"))
    eventually(lambda: gone in stack.catalog_ids("reviews"), timeout=90, what="registered again")
    eventually(
        lambda: set(stack.reviews(40)) == {"reviews-v1", "reviews-v3"},
        timeout=90,
        what="v1 serving again",
    )


def test_down_leaves_nothing(stack: Stack) -> None:
    stack.compose("down", "-v")
    label = f"label=com.docker.compose.project={stack.project}"
    for kind in ("ps -a", "volume ls", "network ls"):
        listed = stack.docker(*kind.split(), "-q", "--filter", label).stdout.split()
        assert listed == [], (kind, listed)
