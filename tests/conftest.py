from __future__ import annotations

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
        default="envoy,envoy-1.36",
        help="comma-separated Envoy binaries (in .venv/bin) that e2e tests run against",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "envoy_bin" in metafunc.fixturenames:
        envoys = [e for e in metafunc.config.getoption("--envoys").split(",") if e]
        metafunc.parametrize("envoy_bin", envoys, scope="module")
