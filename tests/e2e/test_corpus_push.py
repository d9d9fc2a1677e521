"""Istio's own example config, accepted by Galley, is never NACKed by Envoy.

Every corpus document Galley accepts is applied; a sidecar and an ingress
gateway then receive everything Pilot builds from it, and both must accept it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from api.resources import check_document
from tests.api.test_corpus import CORPUS
from tests.e2e.harness import Mesh, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.compat]


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(Path(tmp_path_factory.mktemp("corpus")), envoy=envoy_bin)
    try:
        m.start_consul()
        m.start_galley()
        m.start_pilot()
        yield m
    finally:
        m.stop()


def _accepted_documents() -> list[dict[str, object]]:
    docs = []
    for path in sorted(CORPUS.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or "_err" in doc:
                continue
            if check_document(doc, path.name).ok:
                docs.append(doc)
    return docs


@pytest.mark.skipif(not CORPUS.exists(), reason="shared/corpus is not beside the repo")
def test_corpus_config_is_accepted_by_envoy(mesh: Mesh) -> None:
    mesh.add("reviews", "reviews-1")
    mesh.add("productpage", "productpage-1")
    client = mesh.client("client")
    gateway = mesh.gateway("ingressgateway")
    docs = _accepted_documents()
    assert len(docs) > 100
    # One document per apply: the corpus holds conflicting copies of the same names.
    for doc in docs:
        req = urllib.request.Request(
            f"http://127.0.0.1:{mesh.galley_http}/v1/apply",
            data=json.dumps(doc).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {mesh.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
    # Every distinct resource applied is in Pilot's config before sync is judged (a sync
    # seen earlier could be to a snapshot without the last documents).
    distinct = {
        (d["kind"], d["metadata"].get("namespace", "default"), d["metadata"]["name"]) for d in docs
    }
    eventually(
        lambda: mesh.pilot_metric("pilot_config_resources") == len(distinct),
        timeout=60,
        what=f"{len(distinct)} resources in pilot",
    )

    def synced(w: str) -> bool:
        proxies = mesh.pilot_json("/debug/syncz")["proxies"]
        mine = [p for p in proxies if p["proxy"] == w]
        return bool(mine) and all(
            t["version_acked"] == t["version_sent"] for t in mine[0]["types"].values()
        )

    try:
        # A few hundred resources, applied one by one: generous on a loaded machine.
        eventually(
            lambda: synced("client") and synced(gateway.instance), timeout=90, what="proxies synced"
        )
    except AssertionError as err:
        state = {
            p["proxy"]: (
                p["last_nack"],
                {k: t for k, t in p["types"].items() if t["version_acked"] != t["version_sent"]},
            )
            for p in mesh.pilot_json("/debug/syncz")["proxies"]
        }
        raise AssertionError(f"{err}; last NACK and unacked types per proxy: {state}") from None
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0, mesh.pilot_json("/debug/syncz")
    for w in (client, gateway):
        rejected = w.admin("/stats?filter=update_rejected")
        assert all(
            line.rsplit(": ", 1)[1] == "0" for line in rejected.splitlines() if ": " in line
        ), rejected
    # The client's clusters are exactly Pilot's (the corpus's Sidecar in `default` limits
    # them to namespace abc, which has none: so none but what Sidecar scoping keeps).
    dump = json.loads(client.admin("/config_dump?resource=dynamic_active_clusters"))
    in_envoy = {c["cluster"]["name"] for c in dump.get("configs", [])}
    in_pilot = {c["name"] for c in mesh.pilot_json("/debug/config_dump?proxy=client")["cds"]}
    assert in_envoy == in_pilot, in_envoy ^ in_pilot
    gateway_dump = json.loads(gateway.admin("/config_dump?resource=dynamic_active_clusters"))
    assert len(gateway_dump["configs"]) > 5  # a gateway is not scoped by Sidecars
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.admin_port}/listeners", timeout=5) as r:
        assert r.status == 200
