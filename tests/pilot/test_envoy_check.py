"""Pilot's Envoy check (pilot/envoy_check.py) with the real Envoy: a proxy's planned config
is accepted, a broken one refused with Envoy's own error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pilot.envoy_check import EnvoyChecker, envoy_binary, validate, validation_bootstrap
from pilot.model import MeshSnapshot, Proxy
from pilot.plan import Proposal, candidate_config, proxy_config
from pilot.xds.context import PushContext
from tests.pilot.test_plan import CATALOG, GENERATORS, SPLIT, SUBSETS, _resources

pytestmark = pytest.mark.e2e

# A sidecar with a mesh identity whose SDS files exist only on its own host, not here.
SDS = ("127.0.0.1:1", "/nonexistent/mesh/token", "/nonexistent/mesh/root-cert.pem")
PROXY = Proxy(
    id="productpage-1",
    service="productpage",
    labels={"version": "v1"},
    outbound_port=15001,
    inbound_port=15006,
    app_port=9080,
    sds=SDS,
)


def _config(text: str = SUBSETS + "---" + SPLIT) -> dict[str, list[dict[str, Any]]]:
    config = candidate_config([], Proposal(tuple(_resources(text))))
    ctx = PushContext.build(MeshSnapshot.build(1, CATALOG, config))
    return {k: list(v.values()) for k, v in proxy_config(ctx, PROXY, GENERATORS).items()}


def _check(resources: dict[str, list[dict[str, Any]]], tmp_path: Path) -> Any:
    envoy = envoy_binary()
    assert envoy is not None
    return validate(
        validation_bootstrap(resources), envoy=envoy, workdir=tmp_path, sds_files=SDS[1:]
    )


def test_a_planned_config_is_accepted(tmp_path: Path) -> None:
    config = _config()
    assert config["rds"] and config["eds"] and config["cds"]
    assert _check(config, tmp_path).accepted, _check(config, tmp_path)


def test_an_invalid_regex_is_refused_with_envoys_error(tmp_path: Path) -> None:
    config = _config()
    route = config["rds"][0]["virtualHosts"][0]["routes"][0]
    route["match"] = {"safeRegex": {"regex": "(("}}
    verdict = _check(config, tmp_path)
    assert (verdict.checked, verdict.accepted) == (True, False)
    assert verdict.error == "missing ): ((", verdict


def test_a_duplicate_cluster_is_refused_with_envoys_error(tmp_path: Path) -> None:
    config = _config()
    config["cds"].append(copy.deepcopy(config["cds"][0]))
    verdict = _check(config, tmp_path)
    assert not verdict.accepted and config["cds"][0]["name"] in verdict.error, verdict


def test_access_log_files_are_kept_inside_the_check(tmp_path: Path) -> None:
    config = _config()
    manager = config["lds"][0]["filterChains"][0]["filters"][0]["typedConfig"]
    manager["accessLog"] = [
        {
            "name": "envoy.access_loggers.file",
            "typedConfig": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3."
                "FileAccessLog",
                "path": "/nonexistent/dir/access.log",
            },
        }
    ]
    assert _check(config, tmp_path).accepted
    assert (tmp_path / "access.log").exists()


async def test_the_checker_runs_envoy_and_says_when_it_cannot() -> None:
    config = _config()
    assert (await EnvoyChecker().check(config, SDS[1:])).accepted
    missing = await EnvoyChecker(envoy="").check(config)
    assert (missing.checked, missing.accepted) == (False, False)
    assert missing.error.startswith("not checked by Envoy")
