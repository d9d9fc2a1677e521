"""Telemetry on the wire: Prometheus stats, JSON access logs and Zipkin spans from a
request through the mesh, switched on by Istio's Telemetry resource."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.procs import free_port
from tests.e2e.harness import Mesh, eventually

pytestmark = pytest.mark.e2e


class Collector:
    """A Zipkin collector endpoint that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, object]] = []
        spans = self.spans

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self._body()
                if self.path == "/api/v2/spans":
                    spans.extend(json.loads(body or b"[]"))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def mesh(envoy_bin: str, tmp_path: Path, collector: Collector) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy=envoy_bin)
    try:
        m.start_consul()
        m.start_galley()
        # Providers configured, but nothing on by default: the Telemetry resource decides.
        m.start_pilot(
            extra_args=(
                f"--zipkin-addr=127.0.0.1:{collector.port}",
                "--trace-sampling=0",
                "--access-log-format=json",
            )
        )
        yield m
    finally:
        m.stop()


def test_request_shows_in_stats_access_log_and_traces(mesh: Mesh, collector: Collector) -> None:
    server = mesh.add("observed", "observed-1")
    client = mesh.client("watcher")
    eventually(lambda: mesh.request(client.outbound_port, "observed").status == 200)
    mesh.apply("""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: envoy}]
  tracing:
  - providers: [{name: zipkin}]
    randomSamplingPercentage: 100
""")
    routes = lambda: client.admin("/config_dump?resource=dynamic_listeners")  # noqa: E731
    eventually(
        lambda: "envoy.tracers.zipkin" in routes() and "access_log" in routes(),
        what="telemetry pushed",
    )
    for _ in range(5):
        assert mesh.request(client.outbound_port, "observed", "/telemetry-check").status == 200

    # Prometheus stats on the sidecar's stats port.
    with urllib.request.urlopen(
        f"http://127.0.0.1:{client.stats_port}/stats/prometheus", timeout=5
    ) as resp:
        text = resp.read().decode()
    counts = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        # Envoy's default tag extraction splits the cluster name at its dots.
        if "upstream_rq_total{" in line and 'envoy_cluster_name="outbound|9080||observed' in line
    ]
    assert counts and max(counts) >= 5, [x for x in text.splitlines() if "observed" in x][:10]

    # JSON access log lines (the sidecar writes them to stdout, i.e. its log file).
    def logged() -> list[dict[str, object]]:
        lines = (mesh.sup.log_dir / "envoy-watcher.log").read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in entries if e.get("path") == "/telemetry-check"]

    entries = eventually(lambda: len(logged()) >= 5 and logged(), what="access log lines")
    assert entries[0]["response_code"] == 200 and entries[0]["authority"] == "observed"
    assert str(entries[0]["upstream_cluster"]).startswith("outbound|9080||observed")
    server_log = mesh.sup.log_dir / f"envoy-{server.instance}.log"

    def inbound_logged() -> bool:
        # Connections opened before the update drain first; keep traffic flowing.
        mesh.request(client.outbound_port, "observed", "/telemetry-check")
        return '"path":"/telemetry-check"' in server_log.read_text().replace(" ", "")

    eventually(inbound_logged, interval=0.5, what="the inbound side logs too")

    # Spans at the collector, client and server side of the same traces.
    try:
        eventually(
            lambda: len({s.get("traceId") for s in collector.spans}) >= 2,
            timeout=20,
            what="spans at the collector",
        )
    except AssertionError as err:
        raise AssertionError(f"{err}: {collector.spans[:3]}") from None
    services = {s.get("localEndpoint", {}).get("serviceName") for s in collector.spans}  # type: ignore[union-attr]
    assert {"watcher", "observed"} <= services, services  # both sidecars report their side
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
