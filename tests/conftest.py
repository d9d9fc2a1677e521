from __future__ import annotations

from collections.abc import Iterator

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output instead of comparing",
    )
    parser.addoption(
        "--envoys",
        default="envoy",
        help="comma-separated Envoy binaries (in .venv/bin) that every e2e test runs against",
    )
    parser.addoption(
        "--compat-envoys",
        default="envoy-1.36",
        help="comma-separated Envoy binaries that the compatibility subset (marker compat) "
        "runs against too ('' for none)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "envoy_bin" in metafunc.fixturenames:
        envoys = [e for e in metafunc.config.getoption("--envoys").split(",") if e]
        if metafunc.definition.get_closest_marker("compat") is not None:
            compat = metafunc.config.getoption("--compat-envoys").split(",")
            envoys += [e for e in compat if e and e not in envoys]
        metafunc.parametrize("envoy_bin", envoys, scope="module")


@pytest.fixture(scope="session")
def consul_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Consul dev agent for the session; yields its HTTP address."""
    from meshctl.procs import ConsulPorts, Supervisor, bin_path
    from tests.e2e.harness import eventually

    sup = Supervisor(tmp_path_factory.mktemp("consul") / "logs")
    ports = ConsulPorts()
    try:
        sup.start("consul", ports.argv(bin_path("consul"), None))
        sup.wait_http("consul", f"http://127.0.0.1:{ports.http}/v1/status/leader")
        import consul

        eventually(lambda: consul.Consul(port=ports.http).status.leader(), 30)
        yield f"127.0.0.1:{ports.http}"
    finally:
        sup.stop_all()
