"""The README's run command: `meshctl up` brings up the whole mesh and its shop demo,
Istio YAML changes what the front page shows, and `meshctl down` stops all of it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from meshctl.procs import bin_path, free_port
from tests.e2e.harness import eventually
from tests.e2e.tls_server import make_pki

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def page(url: str, user: str | None = None) -> str:
    req = urllib.request.Request(url, headers={"end-user": user} if user else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(resp.read().decode())


def reviews(url: str, user: str | None = None) -> str:
    found = re.search(r"Reviews: (reviews-v\d)", page(url, user))
    return found.group(1) if found else "none"


SAMPLES = Path(__file__).resolve().parents[2] / "meshctl" / "demo" / "samples"
BOOKINFO = (
    Path(__file__).resolve().parents[3] / "shared" / "corpus" / "istio" / "bookinfo-networking"
)


def _istio_bookinfo_changes_the_page(url: str, galley: list[str]) -> None:
    """Istio's own bookinfo YAMLs, unchanged, drive the demo's front page."""

    def apply(name: str) -> None:
        out = subprocess.run(
            [bin_path("meshctl"), "apply", "-f", str(BOOKINFO / name), *galley],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr

    apply("destination-rule-all.yaml")
    apply("virtual-service-all-v1.yaml")
    eventually(
        lambda: {reviews(url, "jason") for _ in range(5)} == {"reviews-v1"}, what="all-v1 in force"
    )
    apply("virtual-service-reviews-90-10.yaml")
    eventually(lambda: "reviews-v2" in {reviews(url) for _ in range(40)}, what="90/10 in force")
    split = Counter(reviews(url) for _ in range(200))
    assert set(split) == {"reviews-v1", "reviews-v2"} and split["reviews-v1"] >= 160, split
    apply("virtual-service-reviews-jason-v2-v3.yaml")
    eventually(lambda: {reviews(url) for _ in range(5)} == {"reviews-v3"}, what="others on v3")
    assert {reviews(url, "jason") for _ in range(5)} == {"reviews-v2"}
    apply("virtual-service-ratings-test-abort.yaml")
    eventually(
        lambda: "Ratings service is currently unavailable" in page(url, "jason"),
        what="jason's ratings aborted",
    )
    assert "red stars" in page(url)  # everyone else still gets ratings (from v3)


def _https_walkthrough(state: Path, text: str, galley: list[str]) -> None:
    """The README's HTTPS step: a certificate kept by Citadel (`meshctl secret create`),
    the shipped https-gateway sample, and the shop over TLS with that certificate."""
    citadel = re.search(r"metrics http://(127\.0\.0\.1:\d+)/metrics", text)
    assert citadel is not None, text
    cert, key = make_pki(state, "shop.example.com")["server"], state / "server.key"
    out = subprocess.run(
        [
            bin_path("meshctl"),
            "secret",
            "create",
            "tls",
            "shop-cert",
            f"--cert={cert}",
            f"--key={key}",
            "-n",
            "istio-system",
            f"--citadel-http={citadel.group(1)}",
            f"--admin-token-file={state / 'citadel-admin-token'}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    https, plain = free_port(), free_port()
    sample = SAMPLES / "https-gateway.yaml"
    config = state / "https-gateway.yaml"  # the sample on ports free on this machine
    config.write_text(
        sample.read_text()
        .replace("number: 8443", f"number: {https}")
        .replace("number: 8081", f"number: {plain}")
    )
    out = subprocess.run(
        [bin_path("meshctl"), "apply", "-f", str(config), *galley],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    ctx = ssl.create_default_context(cafile=str(state / "ca.pem"))

    def over_tls() -> str:
        with socket.create_connection(("127.0.0.1", https), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="shop.example.com") as tls:
                tls.sendall(
                    b"GET /productpage HTTP/1.1\r\nHost: shop.example.com\r\n"
                    b"Connection: close\r\n\r\n"
                )
                return b"".join(iter(lambda: tls.recv(65536), b"")).decode(errors="replace")

    reply = eventually(
        lambda: (r := over_tls()).startswith("HTTP/1.1 200") and r,
        timeout=30,
        what="the shop over HTTPS with the certificate from Citadel",
    )
    assert "Reviews: reviews-v" in reply
    redirect = urllib.request.Request(
        f"http://127.0.0.1:{plain}/productpage", headers={"Host": "shop.example.com"}
    )
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(redirect, timeout=5)
    err.value.close()
    assert err.value.code == 301
    assert err.value.headers["location"] == "https://shop.example.com/productpage"


def _gateway_api_walkthrough(state: Path, galley: list[str]) -> None:
    """The README's Gateway API step: the shipped sample (a Gateway served by the demo's
    gateway proxy, an HTTPRoute to productpage), the shop through it, the route's status."""
    port = free_port()
    config = state / "gateway-api.yaml"  # the sample on a port free on this machine
    config.write_text((SAMPLES / "gateway-api.yaml").read_text().replace("8082", str(port)))
    meshctl = bin_path("meshctl")
    out = subprocess.run(
        [meshctl, "apply", "-f", str(config), *galley], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    url = f"http://127.0.0.1:{port}/productpage"
    eventually(lambda: "Reviews: reviews-v" in page(url), what="the shop through the Gateway API")
    out = subprocess.run(
        [meshctl, "get", "httproute", "shop", *galley], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert "Accepted,ResolvedRefs" in out.stdout, out.stdout


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_meshctl_up_runs_the_shop_and_down_stops_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [bin_path("meshctl"), "up", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ports: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "stops everything" in line:
                break
        text = "".join(lines)
        assert "stops everything" in text, text
        for part in ("consul", "citadel", "pilot", "galley", "ingressgateway", "productpage-v1"):
            assert re.search(rf"✓ {part}\b", text), (part, text)
        ports = [int(p) for p in re.findall(r":(\d{2,5})\b", text)]
        url = re.search(r"(http://127\.0\.0\.1:\d+/productpage)", text).group(1)  # type: ignore[union-attr]

        # All three reviews versions serve the front page; v2/v3 show ratings.
        seen = eventually(
            lambda: (
                (c := Counter(reviews(url) for _ in range(30))).keys()
                == {"reviews-v1", "reviews-v2", "reviews-v3"}
                and c
            ),
            what="all three reviews versions serve",
        )
        assert sum(seen.values()) == 30
        assert "Book details: details-v1" in page(url)
        # Sidecars talk mutual TLS with identities from Citadel.
        key = state / "citadel" / "root-key.pem"
        assert key.stat().st_mode & 0o777 == 0o600

        # The printed apply command with a shipped sample: jason gets v2, everyone else v1.
        apply = re.search(r"meshctl apply -f (\S+) (--galley-addr \S+) (--token-file \S+)", text)
        assert apply is not None, text
        out = subprocess.run(
            [
                bin_path("meshctl"),
                "apply",
                "-f",
                apply.group(1),
                *apply.group(2).split(),
                *apply.group(3).split(),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        eventually(
            lambda: {reviews(url, "jason") for _ in range(5)} == {"reviews-v2"},
            what="jason routed to v2",
        )
        assert {reviews(url) for _ in range(10)} == {"reviews-v1"}
        _https_walkthrough(state, text, apply.group(2).split() + apply.group(3).split())
        _gateway_api_walkthrough(state, apply.group(2).split() + apply.group(3).split())
        if BOOKINFO.exists():
            _istio_bookinfo_changes_the_page(url, apply.group(2).split() + apply.group(3).split())
    finally:
        down = subprocess.run(
            [bin_path("meshctl"), "down", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        rc = proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert down.returncode == 0, down.stderr
    assert rc == 0
    left = [p for p in ports if _listening(p)]
    assert not left, f"still listening after meshctl down: {left}"


def test_meshctl_up_no_demo_runs_just_the_control_plane(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [bin_path("meshctl"), "up", "--no-demo", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while (line := proc.stdout.readline()) and "stops everything" not in line:
            lines.append(line)
        text = "".join(lines)
        for part in ("consul", "citadel", "pilot", "galley"):
            assert f"✓ {part}" in text, text
        assert "productpage" not in text and "ingressgateway" not in text
        assert (state / "up.pid").exists()
        second = subprocess.run(
            [bin_path("meshctl"), "up", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1 and "already running" in second.stderr
    finally:
        down = subprocess.run(
            [bin_path("meshctl"), "down", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        rc = proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert down.returncode == 0 and rc == 0
    assert not (state / "up.pid").exists()


def _up(state: Path, *flags: str) -> tuple[subprocess.Popen[str], str]:
    """`meshctl up FLAGS`, read until it says it is up."""
    proc = subprocess.Popen(
        [bin_path("meshctl"), "up", *flags, "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    while (line := proc.stdout.readline()) and "stops everything" not in line:
        lines.append(line)
    return proc, "".join(lines)


def _down(state: Path, proc: subprocess.Popen[str]) -> None:
    down = subprocess.run(
        [bin_path("meshctl"), "down", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.wait(60) == 0 and down.returncode == 0, down.stderr
    if proc.stdout is not None:
        proc.stdout.close()


def _galley_args(text: str, state: Path) -> list[str]:
    """meshctl's flags for the Galley a `meshctl up` printed (its port may differ per run)."""
    port = re.search(r"✓ galley\s+http://127\.0\.0\.1:(\d+)/docs", text)
    assert port is not None, text
    return [f"--galley-addr=127.0.0.1:{port.group(1)}", f"--token-file={state / 'galley-token'}"]


def test_applied_config_survives_a_restart_of_meshctl_up(tmp_path: Path) -> None:
    """Consul keeps its data under the state dir (no -dev): a STRICT policy and a route
    applied before a restart are still stored, served by Galley, and in force on the
    wire after it (the route steers jason to reviews-v2 through the gateway)."""
    state = tmp_path / "state"
    sample = Path(__file__).resolve().parents[2] / "meshctl/demo/samples/reviews-jason-v2.yaml"
    strict = state / "strict.yaml"
    proc, text = _up(state)
    try:
        args = _galley_args(text, state)
        strict.write_text(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
            "metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"
        )
        for path in (strict, sample):
            out = subprocess.run(
                [bin_path("meshctl"), "apply", "-f", str(path), *args],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 0, out.stderr
    finally:
        _down(state, proc)
    proc, text = _up(state)
    try:
        args = _galley_args(text, state)
        got = subprocess.run(
            [bin_path("meshctl"), "get", "pa", "-A", "-o", "yaml", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert got.returncode == 0, got.stderr
        assert "mode: STRICT" in got.stdout, got.stdout
        url = re.search(r"(http://127\.0\.0\.1:\d+/productpage)", text).group(1)  # type: ignore[union-attr]
        eventually(
            lambda: {reviews(url, "jason") for _ in range(5)} == {"reviews-v2"},
            timeout=30,
            what="the route applied before the restart, in force after it",
        )
        assert {reviews(url) for _ in range(10)} == {"reviews-v1"}
    finally:
        _down(state, proc)


def _pid_of(*needles: str) -> int:
    """The pid of the one process whose command line holds every needle."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            found.append(int(proc.name))
    assert len(found) == 1, (needles, found)
    return found[0]


def test_meshctl_up_ha_keeps_the_shop_when_a_consul_server_and_a_pilot_die(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    proc, text = _up(state, "--ha")
    try:
        for part in ("consul", "pilot", "pilot-2", "galley", "galley-2", "productpage-v1"):
            assert re.search(rf"✓ {re.escape(part)}\s", text), (part, text)
        url = re.search(r"(http://127\.0\.0\.1:\d+/productpage)", text).group(1)  # type: ignore[union-attr]
        eventually(lambda: reviews(url) != "none", what="the shop answers")
        consul_line = re.search(r"✓ consul\s+(.*)", text)
        assert consul_line is not None, text
        consul_uis = re.findall(r"http://127\.0\.0\.1:(\d+)/ui", consul_line.group(1))
        assert len(consul_uis) == 3, text
        with urllib.request.urlopen(
            f"http://127.0.0.1:{consul_uis[0]}/v1/status/peers", timeout=5
        ) as resp:
            assert len(json.load(resp)) == 3

        # The third Consul server (the second Pilot's first) and the first Pilot die.
        os.kill(_pid_of("consul", "agent", f"-http-port={consul_uis[2]}"), signal.SIGKILL)
        pilot = re.search(r"✓ pilot\s+xDS 127\.0\.0\.1:(\d+)", text).group(1)  # type: ignore[union-attr]
        os.kill(_pid_of("-m pilot", f"--grpc-addr=127.0.0.1:{pilot}"), signal.SIGKILL)
        galley_2 = re.search(r"✓ galley-2\s+http://127\.0\.0\.1:(\d+)/docs", text).group(1)  # type: ignore[union-attr]
        sample = Path(__file__).resolve().parents[2] / "meshctl/demo/samples/reviews-jason-v2.yaml"
        out = subprocess.run(
            [
                bin_path("meshctl"),
                "apply",
                "-f",
                str(sample),
                f"--galley-addr=127.0.0.1:{galley_2}",
                f"--token-file={state / 'galley-token'}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        eventually(
            lambda: {reviews(url, "jason") for _ in range(5)} == {"reviews-v2"},
            timeout=30,
            what="jason on v2, pushed by the surviving Pilot",
        )
        assert proc.poll() is None, "meshctl up --ha stopped when one replica died"
    finally:
        _down(state, proc)
