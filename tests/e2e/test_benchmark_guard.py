"""The regression guard: the README's quick convergence benchmark, run for real (a real
Consul, Pilot as its own process, 200 simulated proxies), failing only on a gross
regression, at three times the figure the README records, never on machine noise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# The README's "200 simulated x 100 services" row (median of three runs on the project machine).
RECORDED = {"p99_ms": 171.0, "pilot_rss_mb": 110.0, "pilot_cpu_per_push_s": 0.074}
GROSS = 3.0


def test_convergence_has_not_regressed_grossly() -> None:
    argv = [sys.executable, "-m", "benchmarks.convergence", "--proxies", "200"]
    argv += ["--services", "100", "--rounds", "10", "--settle", "0", "--json"]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["missed"] == 0, result
    assert result["proxies"] == 200 and result["rounds"] == 10, result
    worse = {
        name: (result[name], recorded)
        for name, recorded in RECORDED.items()
        if result[name] > GROSS * recorded
    }
    assert not worse, f"over {GROSS}x the recorded figure: {worse}; the whole run: {result}"
