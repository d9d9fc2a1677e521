"""meshctl secret create/list/delete and meshctl token --gateway against a real Citadel
(with a real Consul): one-line errors, exit 1, and nothing secret printed."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.procs import Supervisor, bin_path, free_port
from tests.citadel.helpers import key_body, make_ca, make_server

ADMIN = "admin-for-secret-tests"
CA = make_ca()
SERVER = make_server(CA)
OTHER = make_server(CA, "other.example.com")


def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([bin_path("meshctl"), *args], capture_output=True, text=True, timeout=60)
    for key in (SERVER.key_pem, OTHER.key_pem):
        assert key_body(key) not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    return out


@pytest.fixture(scope="module")
def citadel(consul_agent: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A Citadel process holding credentials in the session's Consul; the flags that reach
    it and its admin credential. Stopped whatever happens."""
    tmp = tmp_path_factory.mktemp("citadel")
    http = free_port()
    sup = Supervisor(tmp / "logs")
    admin = tmp / "admin"
    admin.write_text(ADMIN)
    admin.chmod(0o600)
    try:
        sup.start(
            "citadel",
            [
                sys.executable,
                "-m",
                "citadel",
                f"--state-dir={tmp / 'state'}",
                f"--sds-addr=127.0.0.1:{free_port()}",
                f"--sds-tls-addr=127.0.0.1:{free_port()}",
                f"--http-addr=127.0.0.1:{http}",
                f"--consul-addr={consul_agent}",
            ],
            env={"CITADEL_ADMIN_TOKEN": ADMIN},
        )
        sup.wait_http("citadel", f"http://127.0.0.1:{http}/healthz")
        yield [f"--citadel-http=127.0.0.1:{http}", f"--admin-token-file={admin}"]
        log = (tmp / "logs" / "citadel.log").read_text()
        assert key_body(SERVER.key_pem) not in log and "Traceback" not in log
    finally:
        sup.stop_all()


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, str]:
    files = {
        "cert": SERVER.cert_pem,
        "key": SERVER.key_pem,
        "ca": CA.cert_pem,
        "other-key": OTHER.key_pem,
        "der": "",
    }
    out = {}
    for name, text in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(text)
        out[name] = str(path)
    Path(out["der"]).write_bytes(b"\x30\x82\xff\xfe")
    return out


def test_create_list_delete(citadel: list[str], pems: dict[str, str]) -> None:
    ns = ["-n", "clitest"]
    tls = ["secret", "create", "tls", "web", "--cert", pems["cert"], "--key", pems["key"]]
    out = meshctl(*tls, "--ca-cert", pems["ca"], *ns, *citadel)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("secret tls clitest/web created (valid until ")
    out = meshctl(*tls, *ns, *citadel)
    assert out.returncode == 0 and "replaced" in out.stdout, out.stderr
    generic = ["secret", "create", "generic", "web-cacert", "--ca-cert", pems["ca"]]
    assert meshctl(*generic, *ns, *citadel).returncode == 0
    out = meshctl("secret", "list", *ns, *citadel)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "NOT", "AFTER"]
    assert [line.split()[:2] for line in lines[1:]] == [["web", "tls"], ["web-cacert", "generic"]]
    listed = json.loads(meshctl("secret", "list", "-o", "json", *ns, *citadel).stdout)
    assert [s["name"] for s in listed["secrets"]] == ["web", "web-cacert"]
    for name in ("web", "web-cacert"):
        out = meshctl("secret", "delete", name, *ns, *citadel)
        assert out.returncode == 0 and f"clitest/{name} deleted" in out.stdout
    out = meshctl("secret", "list", *ns, *citadel)
    assert "no gateway credentials in namespace clitest" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["create", "tls", "web", "--cert", "CERT", "--key", "OTHER-KEY"],
            "key: does not match",
        ),
        (["create", "tls", "Web", "--cert", "CERT", "--key", "KEY"], "name: 'Web'"),
        (["create", "tls", "web", "--cert", "/nonexistent", "--key", "KEY"], "cannot read --cert"),
        (["create", "tls", "web", "--cert", "DER", "--key", "KEY"], "not PEM text"),
        (["create", "generic", "web", "--ca-cert", "KEY"], "caCert: not a PEM certificate"),
        (["delete", "nothing-here"], "citadel answered 404"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    citadel: list[str], pems: dict[str, str], args: list[str], message: str
) -> None:
    files = {"CERT": pems["cert"], "KEY": pems["key"], "OTHER-KEY": pems["other-key"]}
    files["DER"] = pems["der"]
    argv = [files.get(a, a) for a in args]
    out = meshctl("secret", *argv, "-n", "clitest", *citadel)
    assert out.returncode == 1, out
    assert message in out.stderr and out.stderr.startswith("meshctl secret: ")
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_wrong_admin_credential_and_no_citadel(citadel: list[str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    out = meshctl("secret", "list", citadel[0], f"--admin-token-file={wrong}")
    assert out.returncode == 1 and "401" in out.stderr and "admin credential" in out.stderr
    out = meshctl(
        "secret", "list", f"--citadel-http=127.0.0.1:{free_port()}", f"--admin-token-file={wrong}"
    )
    assert out.returncode == 1 and "citadel at 127.0.0.1:" in out.stderr


def test_token_gateway_flag_mints_the_role(citadel: list[str], tmp_path: Path) -> None:
    def claims(*extra: str) -> dict[str, object]:
        path = tmp_path / "token"
        out = meshctl(
            "token",
            *citadel,
            "-n",
            "istio-system",
            "--service-account",
            "gw",
            "-o",
            str(path),
            *extra,
        )
        assert out.returncode == 0, out.stderr
        body = path.read_text().split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))

    assert claims("--gateway").get("gw") is True
    assert "gw" not in claims()
