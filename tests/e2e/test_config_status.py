"""Config status on the wire: real Consul, Pilot, Galley and Envoy.

- `meshctl apply --wait` of a VirtualService returns once the client sidecar ACKed
  it, naming the proxy and the time convergence took; Galley serves the resource
  Reconciled, `meshctl get` shows it SYNCED, Pilot's /debug/config_status lists
  the proxy as ACKed.
- A NACK without a test seam: a Sidecar egress listener on a bind:port that
  something else already holds on the proxy's host is valid config (Galley
  cannot know what listens there), and Envoy refuses the listener. `apply --wait`
  exits 1 and prints Envoy's error; Galley serves Reconciled=False, reason Nacked.

Both with State-of-the-World and with Delta xDS.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.compat]

REVIEWS = "VirtualService/default/reviews"


@dataclass
class Env:
    mesh: Mesh
    client: Workload


@pytest.fixture(scope="module", params=["sotw", "delta"])
def env(
    envoy_bin: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    workdir = Path(tmp_path_factory.mktemp("config-status"))
    with Mesh.running(workdir, envoy_bin, delta=request.param == "delta") as mesh:
        mesh.add("reviews", "reviews-1", sidecar=False)
        client = mesh.client("status-client")
        # It has its first config before the tests change it.
        eventually(lambda: _synced(mesh, client.instance), timeout=30, what="client synced")
        yield Env(mesh, client)


def _synced(mesh: Mesh, proxy: str) -> bool:
    for p in mesh.pilot_json("/debug/syncz")["proxies"]:
        if p["proxy"] == proxy:
            types = p["types"].values()
            return bool(types) and all(
                t["version_sent"] and t["version_acked"] == t["version_sent"] for t in types
            )
    return False


def _apply_wait(env: Env, text: str, timeout: str = "20s") -> Any:
    return env.mesh.meshctl(
        "apply",
        "-f",
        "-",
        "--wait",
        f"--timeout={timeout}",
        *env.mesh.galley_args(),
        stdin_text=text,
    )


def _galley_status(env: Env, kind: str, name: str, namespace: str) -> dict[str, Any]:
    out = env.mesh.meshctl(
        "get", kind, name, f"--namespace={namespace}", "-o", "json", *env.mesh.galley_args()
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["status"]  # type: ignore[no-any-return]


def _reconciled(status: dict[str, Any]) -> dict[str, str]:
    return next(c for c in status["conditions"] if c["type"] == "Reconciled")


def test_apply_wait_returns_once_the_proxy_acked_the_change(env: Env) -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - timeout: 7s
    route: [{destination: {host: reviews}}]
"""
    out = _apply_wait(env, text)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{REVIEWS} created" in out.stdout
    acked_line = next(line for line in out.stdout.splitlines() if line.startswith(f"{REVIEWS}:"))
    assert "ACKed by" in acked_line and env.client.instance in acked_line, out.stdout
    assert "converged in" in out.stdout

    status = _galley_status(env, "vs", "reviews", "default")
    cond = _reconciled(status)
    assert (cond["status"], cond["reason"]) == ("True", "Reconciled"), cond
    assert env.client.instance in status["distribution"]["acked"]

    pilot = env.mesh.pilot_json(f"/debug/config_status?resource={REVIEWS}")
    entry = pilot["resources"][REVIEWS]
    assert entry["revision"] == status["distribution"]["revision"]
    assert env.client.instance in entry["acked"] and entry["nacked"] == []

    table = env.mesh.meshctl("get", "vs", "-n", "default", *env.mesh.galley_args())
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert "SYNCED" in header
    synced = row.split()[3]
    done, _, affected = synced.partition("/")
    assert done == affected and int(done) >= 1, table.stdout


def test_a_nack_is_reported_with_envoys_error(env: Env) -> None:
    # Something else holds the port the Sidecar binds on the client's host: Envoy refuses.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        text = f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: taken, namespace: default}}
spec:
  egress:
  - port: {{number: {port}, name: tcp-reviews, protocol: TCP}}
    bind: 127.0.0.1
    hosts: [./reviews.default.svc.cluster.local]
"""
        out = _apply_wait(env, text, timeout="15s")
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"NACK from {env.client.instance} (lds):" in out.stdout, out.stdout
        assert "not converged" in out.stderr

        status = _galley_status(env, "sidecar", "taken", "default")
        cond = _reconciled(status)
        assert (cond["status"], cond["reason"]) == ("False", "Nacked"), cond
        assert f"{env.client.instance} (lds): " in cond["message"]
        (refusal,) = status["distribution"]["nacked"]
        assert refusal["proxy"] == env.client.instance, refusal
        assert f"cannot bind '127.0.0.1:{port}'" in refusal["error"], refusal  # Envoy's words

        table = env.mesh.meshctl("get", "sidecar", "-n", "default", *env.mesh.galley_args())
        assert "NACK" in table.stdout, table.stdout
    finally:
        holder.close()
        env.mesh.meshctl("delete", "sidecar", "taken", "-n", "default", *env.mesh.galley_args())
