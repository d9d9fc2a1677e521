"""Golden files for the Envoy config Pilot generates (update: pytest --update-golden)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from pilot.http import _MESSAGES
from pilot.xds.cds import ClusterGenerator
from pilot.xds.context import PushContext
from pilot.xds.eds import EndpointGenerator
from pilot.xds.lds import ListenerGenerator
from pilot.xds.rds import RouteGenerator
from tests.pilot.fixtures import sidecar, snapshot

GOLDEN = Path(__file__).parent / "golden"


def _render(namespace: str) -> dict[str, list[object]]:
    ctx = PushContext.build(snapshot())
    proxy = sidecar(namespace)
    out: dict[str, list[object]] = {}
    for gen, names in (
        (ClusterGenerator(), frozenset()),
        (EndpointGenerator(), frozenset(ctx.assignments)),
        (ListenerGenerator(), frozenset()),
        (RouteGenerator(), frozenset({f"outbound|http|{namespace}"})),
    ):
        message = _MESSAGES[gen.type_url]
        out[gen.type_url.rsplit(".", 1)[1]] = [
            json_format.MessageToDict(message.FromString(r.value_bytes))
            for r in gen.generate(ctx, proxy, names, None)
        ]
    return out


@pytest.mark.parametrize("namespace", ["default", "backend"])
def test_sidecar_config_matches_golden(namespace: str, request: pytest.FixtureRequest) -> None:
    path = GOLDEN / f"sidecar-{namespace}.json"
    got = json.dumps(_render(namespace), indent=2, sort_keys=True) + "\n"
    if request.config.getoption("--update-golden"):
        path.write_text(got)
    assert path.exists(), f"{path} missing: run pytest --update-golden"
    assert got == path.read_text()
