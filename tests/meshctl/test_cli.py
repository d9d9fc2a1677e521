"""meshctl as a user runs it: bootstraps stock Envoy accepts, one-line errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from meshctl.bootstrap import DRAIN_ARGS
from meshctl.procs import bin_path, free_port


def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bin_path("meshctl"), *args], capture_output=True, text=True, timeout=60)


BOOT = [
    "bootstrap",
    "--pilot-addr",
    "127.0.0.1:15010",
    "--service",
    "reviews",
    "-n",
    "shop",
    "--id",
    "reviews-1",
    "--admin-port",
    "15000",
    "--outbound-port",
    "15001",
    "--inbound-port",
    "15006",
    "--app-port",
    "9080",
    "--label",
    "version=v2",
    "--service-account",
    "bookinfo-reviews",
]


@pytest.mark.parametrize("envoy", ["envoy", "envoy-1.36"])
def test_bootstrap_is_accepted_by_stock_envoy(envoy: str, tmp_path: Path) -> None:
    out = meshctl(*BOOT)
    assert out.returncode == 0, out.stderr
    config = tmp_path / "bootstrap.yaml"
    config.write_text(out.stdout)
    doc = yaml.safe_load(out.stdout)
    assert doc["node"]["metadata"]["NAMESPACE"] == "shop"
    assert doc["node"]["metadata"]["LABELS"] == {"version": "v2"}
    # The header names the command line to run it with; stock Envoy takes those flags.
    run = out.stdout.splitlines()[0]
    assert run.startswith("# Run: envoy -c THIS_FILE ")
    flags = run.split("THIS_FILE", 1)[1].split()
    assert flags == list(DRAIN_ARGS)
    argv = [bin_path(envoy), "--mode", "validate", "-c", str(config), *flags]
    check = subprocess.run(
        [*argv, "--base-id", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "OK" in check.stdout + check.stderr


@pytest.mark.parametrize(
    ("flags", "api_type"), [((), "DELTA_GRPC"), (("--delta",), "DELTA_GRPC"), (("--sotw",), "GRPC")]
)
def test_bootstrap_speaks_delta_xds_unless_told_sotw(flags: tuple[str, ...], api_type: str) -> None:
    """Delta by default, as Istio since 1.22; --sotw for State of the World."""
    out = meshctl(*BOOT, *flags)
    assert out.returncode == 0, out.stderr
    ads = yaml.safe_load(out.stdout)["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == api_type


def test_bootstrap_takes_one_xds_protocol() -> None:
    out = meshctl(*BOOT, "--delta", "--sotw")
    assert out.returncode == 2
    assert "not allowed with argument" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "bootstrap",
                "--pilot-addr",
                "nope",
                "--service",
                "a",
                "--id",
                "a",
                "--admin-port",
                "1",
                "--outbound-port",
                "2",
            ],
            "'nope' is not HOST:PORT",
        ),
        (
            [
                "bootstrap",
                "--pilot-addr",
                "h:1",
                "--service",
                "a",
                "--id",
                "a",
                "--admin-port",
                "1",
                "--outbound-port",
                "2",
                "--inbound-port",
                "3",
            ],
            "--inbound-port and --app-port go together",
        ),
        (
            [
                "bootstrap",
                "--pilot-addr",
                "h:1",
                "--service",
                "a",
                "--id",
                "a",
                "--admin-port",
                "1",
                "--outbound-port",
                "1",
            ],
            "must differ",
        ),
        (
            [
                "register",
                "--consul-addr",
                "127.0.0.1:1",
                "--service",
                "Bad_Name",
                "--id",
                "x",
                "--address",
                "127.0.0.1",
                "--port",
                "80",
            ],
            "service 'Bad_Name'",
        ),
        (
            [
                "register",
                "--consul-addr",
                "127.0.0.1:1",
                "--service",
                "ok",
                "--id",
                "x",
                "--address",
                "127.0.0.1",
                "--port",
                "80",
            ],
            "consul at 127.0.0.1:1",
        ),
        (["deregister", "--consul-addr", "127.0.0.1:1", "--id", "x"], "consul at 127.0.0.1:1"),
    ],
)
def test_errors_are_one_line_and_nonzero(args: list[str], message: str) -> None:
    out = meshctl(*args)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_sync_state_names_istioctl_uses() -> None:
    from meshctl.status_cmds import sync_state

    assert sync_state(None) == "NOT SENT"
    assert sync_state({"version_sent": "", "version_acked": ""}) == "NOT SENT"
    assert sync_state({"version_sent": "a", "version_acked": "a", "nack": None}) == "SYNCED"
    assert sync_state({"version_sent": "b", "version_acked": "a", "nack": None}) == "STALE"
    assert sync_state({"version_sent": "b", "version_acked": "a", "nack": "bad"}) == "STALE (NACK)"


def test_proxy_status_columns_fit_their_widest_cell(capsys: pytest.CaptureFixture[str]) -> None:
    from meshctl.status_cmds import STATUS_HEADER, print_table, status_rows

    synced = {"version_sent": "d3", "version_acked": "d3", "nack": None}
    stale = {"version_sent": "d4", "version_acked": "d3", "nack": "bad"}
    body = {
        "snapshot": 8,
        "proxies": [
            {
                "proxy": "ingressgateway-1",
                "service": "ingressgateway",
                "namespace": "istio-system",
                "types": {"cds": stale, "lds": synced},
            },
            {"proxy": "a", "service": "a", "namespace": "default", "types": {"cds": synced}},
        ],
    }
    print_table(STATUS_HEADER, status_rows(body))
    header, first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("a ") and second.startswith("ingressgateway-1 ")
    # Every column starts where its header does, however long the cluster name.
    starts = [header.index(h) for h in STATUS_HEADER]
    for line, cells in ((first, ["a", "a.default"]), (second, ["ingressgateway-1"])):
        for start, cell in zip(starts, cells, strict=False):
            assert line[start:].startswith(cell), (line, cell)
    assert second[starts[2] :].startswith("STALE (NACK)")
    assert STATUS_HEADER[3] == "LDS" and first[starts[3] :].startswith("NOT SENT")
    assert second.rstrip().endswith("8")


def test_an_empty_table_prints_its_header(capsys: pytest.CaptureFixture[str]) -> None:
    from meshctl.status_cmds import STATUS_HEADER, print_table

    print_table(STATUS_HEADER, [])
    assert capsys.readouterr().out.split() == list(STATUS_HEADER)


def test_a_reader_that_stops_reading_ends_meshctl_quietly() -> None:
    """`meshctl ... | head`: no error line once head has what it wants."""
    proc = subprocess.Popen(
        [bin_path("meshctl"), *BOOT], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before meshctl has started, so its first write finds no reader
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert err == ""
