"""Golden files: one case per translated Istio feature (update: pytest --update-golden).

`tests/pilot/golden/<case>/` holds `input.yaml` (the Istio config), optionally
`case.yaml` (the proxy it is rendered for and extra catalog instances, either
with a `locality`), and
what Pilot sends that proxy: `cds.json`, `eds.json`, `lds.json`, `rds.json`
and `ecds.json`. Names are followed the way Envoy follows them: EDS for the
EDS clusters in CDS, RDS for the route tables the listeners name, ECDS for
the filters they discover (HTTP and network filters).

`test_every_golden_is_accepted_by_envoy` loads every case's output into the
real Envoy (1.40 and 1.36) in validate mode the way Pilot's own Envoy check
does (`pilot/envoy_check.py`): route tables and filter configs are put inline
where the listener names them, and each load assignment is checked as a
static cluster, so every resource passes Envoy's own checks.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from api.catalog import Instance
from api.mesh_config import load_mesh_config
from api.resources import Resource, check_text
from meshctl.procs import bin_path
from pilot import envoy_check
from pilot.envoy_check import OUTPUTS, filters, hcm
from pilot.model import MeshConfig, MeshSnapshot, Proxy
from pilot.xds.cds import ClusterGenerator
from pilot.xds.context import PushContext
from pilot.xds.ecds import ExtensionConfigGenerator
from pilot.xds.eds import EndpointGenerator
from pilot.xds.lds import ListenerGenerator
from pilot.xds.rds import RouteGenerator
from pilot.xds.typeurls import MESSAGES
from tests.pilot.fixtures import instance

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").exists())
SDS = ("127.0.0.1:15013", "/var/run/mesh/token", "/var/run/mesh/root-cert.pem")


def _catalog(extra: list[dict[str, Any]]) -> dict[str, tuple[Instance, ...]]:
    instances = [
        instance("reviews", 1),
        instance("reviews", 2, version="v2"),
        instance("ratings", 3, namespace="backend"),
        *(instance(**kw) for kw in extra),
    ]
    out: dict[str, tuple[Instance, ...]] = {}
    for inst in instances:
        out[inst.service] = (*out.get(inst.service, ()), inst)
    return out


def _proxy(spec: dict[str, Any]) -> Proxy:
    kind = spec.get("kind", "sidecar")
    if kind == "gateway":
        return Proxy(
            id="gateway-1",
            service="ingressgateway",
            namespace=spec.get("namespace", "istio-system"),
            labels=spec.get("labels", {"istio": "ingressgateway"}),
            instance_ip="10.0.0.100",
            kind="gateway",
            sds=SDS if spec.get("mtls", False) else None,
        )
    return Proxy(
        id="productpage-1",
        service="productpage",
        namespace=spec.get("namespace", "default"),
        labels=spec.get("labels", {"app": "productpage", "version": "v1"}),
        outbound_port=15001,
        inbound_port=15006,
        app_port=spec.get("app_port", 9080),
        sds=SDS if spec.get("mtls", True) else None,
        locality=spec.get("locality", ""),
    )


def _config(text: str) -> list[Resource]:
    checked = check_text(text, "input.yaml")
    errors = [str(i) for c in checked for i in c.errors]
    assert not errors, errors
    return [c.resource for c in checked if c.resource is not None]


def render(case: str) -> dict[str, list[dict[str, Any]]]:
    folder = GOLDEN / case
    meta_path = folder / "case.yaml"
    meta: dict[str, Any] = yaml.safe_load(meta_path.read_text()) if meta_path.exists() else {}
    mesh_fields = dict(meta.get("mesh", {}))
    if "extensionProviders" in mesh_fields:  # Istio's MeshConfig form, validated as Pilot does
        raw = {"extensionProviders": mesh_fields.pop("extensionProviders")}
        providers = load_mesh_config(json.dumps(raw), f"{case}/case.yaml").extension_providers
        mesh_fields["extension_providers"] = tuple(providers or ())
    mesh = MeshConfig(**mesh_fields)
    snap = MeshSnapshot.build(
        1, _catalog(meta.get("instances", [])), _config((folder / "input.yaml").read_text()), mesh
    )
    ctx = PushContext.build(snap)
    assert ctx.consistent(["default", "backend", "istio-system"]) == []
    proxy = _proxy(meta.get("proxy", {}))

    def generate(gen: Any, names: frozenset[str]) -> list[dict[str, Any]]:
        message = MESSAGES[gen.type_url]
        return [
            json_format.MessageToDict(message.FromString(r.value_bytes))
            for r in gen.generate(ctx, proxy, names, None)
        ]

    out: dict[str, list[dict[str, Any]]] = {}
    out["cds"] = generate(ClusterGenerator(), frozenset())
    eds_names = {c["name"] for c in out["cds"] if c.get("type") == "EDS"}
    out["eds"] = generate(EndpointGenerator(), frozenset(eds_names))
    out["lds"] = generate(ListenerGenerator(), frozenset())
    hcms = [hcm(f) for lis in out["lds"] for f in filters(lis)]
    route_names = {h["rds"]["routeConfigName"] for h in hcms if h and "rds" in h}
    out["rds"] = generate(RouteGenerator(), frozenset(route_names))
    discovered = {
        f["name"] for h in hcms if h for f in h.get("httpFilters", []) if "configDiscovery" in f
    }
    discovered |= {f["name"] for lis in out["lds"] for f in filters(lis) if "configDiscovery" in f}
    out["ecds"] = generate(ExtensionConfigGenerator(), frozenset(discovered))
    return out


def _dump(resources: list[dict[str, Any]]) -> str:
    return json.dumps(resources, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("case", CASES)
def test_case_matches_golden(case: str, request: pytest.FixtureRequest) -> None:
    got = render(case)
    for kind in OUTPUTS:
        path = GOLDEN / case / f"{kind}.json"
        if request.config.getoption("--update-golden"):
            path.write_text(_dump(got[kind]))
        assert path.exists(), f"{path} missing: run pytest --update-golden"
        assert _dump(got[kind]) == path.read_text(), f"{case}/{kind}.json differs"


def test_there_are_cases_for_each_kind() -> None:
    kinds = {
        doc["kind"]
        for case in CASES
        for doc in yaml.safe_load_all((GOLDEN / case / "input.yaml").read_text())
        if doc
    }
    assert kinds >= {
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "Sidecar",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "Telemetry",
    }


# --- every golden output through the real Envoy's checks ---


@pytest.mark.e2e
@pytest.mark.parametrize("envoy", ["envoy", "envoy-1.36"])
def test_every_golden_is_accepted_by_envoy(envoy: str, tmp_path: Path) -> None:
    """Each case's output as Pilot's Envoy check builds it (`pilot.envoy_check`); the files
    a proxy's SDS config names are stood in for there, as on Pilot's host."""

    def check(case: str) -> str | None:
        out = {kind: json.loads((GOLDEN / case / f"{kind}.json").read_text()) for kind in OUTPUTS}
        workdir = tmp_path / case
        workdir.mkdir()
        verdict = envoy_check.validate(
            envoy_check.validation_bootstrap(out),
            envoy=bin_path(envoy),
            workdir=workdir,
            sds_files=SDS[1:],
            cwd=ROOT,  # cases name certificate files relative to the repo
            timeout=120,
        )
        return None if verdict.accepted else f"{case}: {verdict.error}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        refused = [r for r in pool.map(check, CASES) if r is not None]
    assert refused == []
