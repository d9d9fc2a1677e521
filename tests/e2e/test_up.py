"""The README's run command: `meshctl up` brings up a working mesh and Ctrl-C stops all of it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from meshctl.procs import bin_path
from tests.e2e.harness import Mesh, eventually

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_meshctl_up_serves_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [bin_path("meshctl"), "up", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(lines)
        assert "Ctrl-C stops everything" in text, text
        port = int(re.search(r"curl -x http://127\.0\.0\.1:(\d+) http://frontend/", text).group(1))  # type: ignore[union-attr]
        ports = [int(p) for p in re.findall(r":(\d{2,5})\b", text)]

        def front_page() -> bool:
            reply = Mesh.request(port, "frontend", proxy_form=True)
            upstream = reply.body.get("upstream", {}) if isinstance(reply.body, dict) else {}
            return reply.status == 200 and upstream.get("body", {}).get("service") == "backend"

        eventually(front_page, timeout=20, what="the demo's curl works")
        backends = {Mesh.request(port, "backend").instance for _ in range(20)}
        assert backends == {"backend-v1", "backend-v2"}
        # The printed apply command changes routing: everything to v2.
        apply = re.search(r"meshctl apply -f \S+ (--galley-addr \S+) (--token-file \S+)", text)
        assert apply is not None, text
        rule = (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: backend}\n"
            "spec: {host: backend, subsets: [{name: v2, labels: {version: v2}}]}\n---\n"
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: backend}\n"
            "spec: {hosts: [backend],\n"
            "       http: [{route: [{destination: {host: backend, subset: v2}}]}]}\n"
        )
        out = subprocess.run(
            [
                bin_path("meshctl"),
                "apply",
                "-f",
                "-",
                *apply.group(1).split(),
                *apply.group(2).split(),
            ],
            input=rule,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        eventually(
            lambda: {Mesh.request(port, "backend").instance for _ in range(10)} == {"backend-v2"},
            what="routing changed by the applied VirtualService",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert rc == 0
    left = [p for p in ports if _listening(p)]
    assert not left, f"still listening after Ctrl-C: {left}"
