"""Istio's own examples: what Istio accepts we accept, what it refuses we refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from api.resources import check_document
from tests.api.helpers import CORPUS

FILES = sorted(CORPUS.rglob("*.yaml")) if CORPUS.exists() else []
# Pilot's own test data that a cluster with Istio's CRDs refuses: (file, field) -> why.
CRD_REFUSED = {
    ("config-rule-websocket-route.yaml", "websocketUpgrade"): "removed from the API",
}


def _documents(path: Path) -> list[tuple[int, dict[str, object]]]:
    return [(i, d) for i, d in enumerate(yaml.safe_load_all(path.read_text())) if d]


@pytest.mark.skipif(not FILES, reason="shared/corpus is not beside the repo")
@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_file(path: Path) -> None:
    for index, doc in _documents(path):
        expected_error = doc.pop("_err", None)
        result = check_document(doc, f"{path.name}:{index}")
        crd = [why for (name, field), why in CRD_REFUSED.items() if name == path.name]
        if crd and any(field in str(i) for i in result.errors for (_, field) in CRD_REFUSED):
            expected_error = crd[0]
        messages = [str(i) for i in result.errors]
        if expected_error is None:
            assert result.ok, f"{path.name}:{index} should be accepted: {messages}"
        else:
            assert not result.ok, f"{path.name}:{index} should be refused ({expected_error})"
