"""Property: config Galley accepts is never NACKed by the real Envoy.

Hypothesis draws Istio documents of every kind Pilot translates (VirtualService,
DestinationRule, ServiceEntry, Sidecar, Gateway, PeerAuthentication,
AuthorizationPolicy, RequestAuthentication, Telemetry) from the api/ models
(tests/strategies.py), keeps what Galley's validation accepts, applies each set
through Galley and waits until Pilot has pushed it to a sidecar with a mesh
identity, sidecars without one, a client sidecar and an ingress gateway. Every proxy must ACK every
type, and Pilot must neither fail a push nor refuse stored config. The set is
then deleted, and that push must be ACKed too.

Examples are derandomized (the same sets on every run) and not shrunk: a
failure is reported with the whole set that caused it. A NACK found here
becomes a validation rule or a translation fix, and a golden case.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from api.resources import kinds
from meshctl.procs import free_port
from tests import strategies
from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.compat]

EXAMPLES = 70
WATCHED = ("pilot_xds_nacks_total", "pilot_xds_push_errors_total", "pilot_config_invalid_total")


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = Path(tmp_path_factory.mktemp("no-nack"))
    with Mesh.running(workdir, envoy_bin, citadel=True) as m:
        yield m


def _ingress(port: int) -> dict[str, Any]:
    """A Gateway for the gateway proxy, so that bound VirtualServices have one."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "ingress", "namespace": "istio-system"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": port, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
            ],
        },
    }


@st.composite
def config_set(draw: st.DrawFn, vocab: strategies.Vocabulary) -> list[dict[str, Any]]:
    """A VirtualService (most of what Pilot translates is routing), and about one
    document in two of each other kind; each named after its place in the set."""
    others = [k for k in strategies.KINDS if k != "VirtualService"]
    kinds_drawn = ["VirtualService", *(k for k in others if draw(st.integers(0, 9)) >= 5)]
    return [
        draw(strategies.document(kind, f"g{i}-{kind.lower()}", vocab))
        for i, kind in enumerate(kinds_drawn)
    ]


def _galley(mesh: Mesh, method: str, path: str, body: object = None) -> tuple[int, str]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{mesh.galley_http}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {mesh.token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def _path(doc: dict[str, Any]) -> str:
    info = kinds()[doc["kind"]]
    meta = doc["metadata"]
    return f"/apis/{doc['apiVersion']}/namespaces/{meta['namespace']}/{info.plural}/{meta['name']}"


def _ref(doc: dict[str, Any]) -> str:
    """How Pilot names a config resource: KIND/NAMESPACE/NAME."""
    info = kinds()[doc["kind"]]
    return f"{info.id}/{doc['metadata']['namespace']}/{doc['metadata']['name']}"


def _unsettled(
    mesh: Mesh, proxies: list[str], held: AbstractSet[str], gone: AbstractSet[str]
) -> tuple[dict[str, Any] | None, str]:
    """(Pilot's sync status, "") once its published config holds every ref in `held` and
    none in `gone`, and every proxy has answered (ACK or NACK) everything it was sent;
    else (None, what is still missing).

    Waiting on the config Pilot holds, not on its snapshot counter: a snapshot can be
    published for an unrelated reason (and an apply and delete can coalesce into no
    snapshot at all), so a newer snapshot alone says nothing about our change."""
    config = mesh.pilot_json("/debug/config_status")["resources"]
    if missing := held - config.keys():
        return None, f"Pilot does not hold {sorted(missing)} yet"
    if still := gone & config.keys():
        return None, f"Pilot still holds {sorted(still)}"
    if pending := {ref: config[ref]["pending"] for ref in held if config[ref].get("pending")}:
        return None, f"proxies yet to apply: {pending}"
    status = mesh.pilot_json("/debug/syncz")
    mine = {p["proxy"]: p for p in status["proxies"] if p["proxy"] in proxies}
    if set(mine) != set(proxies):
        return None, f"connected: {sorted(mine)}"
    for p in mine.values():
        for kind, t in p["types"].items():
            if not (t["version_acked"] == t["version_sent"] or t.get("nack")):
                return None, f"{p['proxy']} has not answered {kind}: {t}"
    return status, ""


def _problems(mesh: Mesh, status: dict[str, Any], before: dict[str, float]) -> list[str]:
    """NACKs in the sync status, and any rise of the counters in WATCHED."""
    found = [
        f"{p['proxy']} NACKed {kind}: {t['nack']}"
        for p in status["proxies"]
        for kind, t in p["types"].items()
        if t.get("nack")
    ]
    for name in WATCHED:
        if (now := mesh.pilot_metric(name)) != before[name]:
            found.append(f"{name} rose from {before[name]} to {now}")
            before[name] = now
    return found


def _pushed(
    mesh: Mesh,
    proxies: list[str],
    held: AbstractSet[str] = frozenset(),
    gone: AbstractSet[str] = frozenset(),
) -> dict[str, Any]:
    why = [""]

    def settled() -> dict[str, Any] | None:
        status, why[0] = _unsettled(mesh, proxies, held, gone)
        return status

    try:
        return eventually(settled, timeout=60, what="config pushed")
    except AssertionError as err:
        raise AssertionError(f"{err}: {why[0]}") from None


def test_accepted_config_is_never_nacked(mesh: Mesh) -> None:
    started = time.monotonic()
    workloads: list[Workload] = [
        mesh.add("reviews", "reviews-1"),
        mesh.add("reviews", "reviews-2", version="v2"),
        mesh.add("productpage", "productpage-1", service_account="productpage"),
        mesh.client("client", service_account="client"),
        mesh.gateway("ingressgateway"),
    ]
    proxies = [w.instance for w in workloads]
    vocab = strategies.Vocabulary(gateway_ports=(free_port(), free_port()))
    base = _ingress(vocab.gateway_ports[0])
    assert _galley(mesh, "POST", "/v1/apply", [base])[0] == 200
    _pushed(mesh, proxies, {_ref(base)})
    counters = {name: mesh.pilot_metric(name) for name in WATCHED}
    drawn = strategies.Draw()
    failures: list[str] = []
    applied = {"sets": 0, "docs": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking against a live mesh
        suppress_health_check=list(HealthCheck),
    )
    @given(docs=config_set(vocab))
    def check(docs: list[dict[str, Any]]) -> None:
        kept = [d for d in (strategies.accepted(doc, drawn) for doc in docs) if d is not None]
        if not kept:
            return
        code, body = _galley(mesh, "POST", "/v1/apply", kept)
        if code != 200:  # accepted one by one, refused together: worth knowing too
            failures.append(f"apply answered {code}: {body}\n{json.dumps(kept, indent=1)}")
            return
        applied["sets"] += 1
        applied["docs"] += len(kept)
        refs = {_ref(doc) for doc in kept}
        try:
            found = _problems(mesh, _pushed(mesh, proxies, held=refs), counters)
        finally:
            for doc in kept:
                code, body = _galley(mesh, "DELETE", _path(doc))
                assert code == 200, f"DELETE {_path(doc)} answered {code}: {body}"
        status = _pushed(mesh, proxies, gone=refs)
        found += [f"after deleting: {p}" for p in _problems(mesh, status, counters)]
        if found:
            failures.append("\n".join(found) + "\n" + json.dumps(kept, indent=1))

    check()
    print(
        f"\n{applied['sets']} sets ({applied['docs']} documents) applied in "
        f"{time.monotonic() - started:.0f}s; generated documents: {drawn.rates()}"
    )
    assert failures == [], "\n\n".join(failures)
    assert applied["sets"] >= EXAMPLES * 3 // 4, "too few generated sets passed validation"
    kept_share = sum(drawn.kept.values()) / max(1, sum(drawn.drawn.values()))
    assert kept_share >= 0.8, drawn.rates()
