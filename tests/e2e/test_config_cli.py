"""meshctl validate / apply / get / delete against a real Galley and Consul."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshctl.procs import bin_path
from tests.e2e.harness import Mesh

pytestmark = pytest.mark.e2e

GOOD = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: loose, namespace: shop}
spec:
  selector: {matchLabels: {app: legacy}}
  mtls: {mode: PERMISSIVE}
"""
BAD = (
    GOOD
    + """\
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: broken, namespace: shop}
spec: {mtls: {mode: SOMETIMES, strict: true}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: global-ports, namespace: shop}
spec: {portLevelMtls: {"70000": {mode: STRICT}}}
"""
)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(Path(tmp_path_factory.mktemp("cfg")))
    try:
        m.start_consul()
        m.start_galley()
        yield m
    finally:
        m.stop()


def meshctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("meshctl"), *args], input=stdin, capture_output=True, text=True, timeout=30
    )


def test_validate_offline(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    out = meshctl("validate", "-f", str(good))
    assert out.returncode == 0 and "2 resource(s) valid" in out.stdout
    out = meshctl("validate", "-f", "-", stdin=BAD)
    assert out.returncode == 1
    assert "stdin:2 (PeerAuthentication/shop/broken): spec.mtls.mode: must be one of" in out.stderr
    assert "stdin:2 (PeerAuthentication/shop/broken): spec.mtls.strict: unknown field" in out.stderr
    assert (
        "stdin:3 (PeerAuthentication/shop/global-ports): spec.portLevelMtls: port-level mTLS "
        "needs a workload selector" in out.stderr
    )
    assert "spec.portLevelMtls.70000: port '70000' must be a number in 1..65535" in out.stderr
    assert "4 error(s)" in out.stderr


def test_apply_get_delete(mesh: Mesh) -> None:
    g = mesh.galley_args()
    out = meshctl("apply", "-f", "-", *g, stdin=BAD)
    assert out.returncode == 1 and "spec.mtls.mode" in out.stderr
    assert json.loads(meshctl("get", "pa", "-n", "shop", "-o", "json", *g).stdout)["items"] == []

    out = meshctl("apply", "-f", "-", *g, stdin=GOOD)
    assert out.returncode == 0, out.stderr
    assert "PeerAuthentication/shop/strict created" in out.stdout
    out = meshctl("apply", "-f", "-", *g, stdin=GOOD)
    assert "PeerAuthentication/shop/strict unchanged" in out.stdout

    listed = meshctl("get", "peerauthentications", "-n", "shop", *g)
    assert listed.returncode == 0 and "strict" in listed.stdout and "loose" in listed.stdout
    one = yaml.safe_load(
        meshctl("get", "PeerAuthentication", "loose", "-n", "shop", "-o", "yaml", *g).stdout
    )
    assert one["spec"]["selector"] == {"matchLabels": {"app": "legacy"}}
    assert one["metadata"]["resourceVersion"].isdigit()

    assert meshctl("delete", "pa", "loose", "-n", "shop", *g).returncode == 0
    missing = meshctl("get", "pa", "loose", "-n", "shop", *g)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_writes_without_token_are_refused(mesh: Mesh) -> None:
    out = meshctl("apply", "-f", "-", f"--galley-addr=127.0.0.1:{mesh.galley_http}", stdin=GOOD)
    assert out.returncode == 1 and "Bearer" in out.stderr


def test_unknown_kind_and_dead_galley_are_one_line() -> None:
    out = meshctl("get", "frobnicator")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "unknown kind" in out.stderr
    out = meshctl("get", "vs", "--galley-addr=127.0.0.1:1")
    assert (
        out.returncode == 1
        and out.stderr.count("\n") == 1
        and "galley at 127.0.0.1:1" in out.stderr
    )
