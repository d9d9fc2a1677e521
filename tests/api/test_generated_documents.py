"""The documents tests/strategies.py draws from the api/ models: most are valid as
drawn, nearly all are kept once the fields validation refuses are removed, and
what is kept is exactly what validation accepts (the no-NACK property test
pushes these to Envoy)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from api.resources import check_document
from tests import strategies

DRAWN = strategies.Draw()


@pytest.mark.parametrize("kind", strategies.KINDS)
def test_documents_of_every_kind_are_drawn_and_kept(kind: str) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(doc=strategies.document(kind, "generated"))
    def drawn(doc: dict[str, Any]) -> None:
        kept = strategies.accepted(copy.deepcopy(doc), DRAWN)
        if kept is not None:
            assert check_document(kept, "kept").ok

    drawn()
    assert DRAWN.kept[kind] >= 0.8 * DRAWN.drawn[kind], DRAWN.rates()


def test_the_share_valid_as_drawn_is_healthy() -> None:
    """Runs after the per-kind draws above (file order) and reports the rates."""
    drawn, valid = sum(DRAWN.drawn.values()), sum(DRAWN.valid.values())
    print(f"\n{DRAWN.rates()}")
    assert drawn == 40 * len(strategies.KINDS)
    assert valid >= 0.4 * drawn, DRAWN.rates()


def test_pruning_removes_what_is_refused_and_keeps_the_rest() -> None:
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {"route": [{"destination": {"host": "reviews", "port": {}}}], "timeout": "1s"},
                {"redirect": {}},
            ],
        },
    }
    assert strategies.accepted(doc) == {
        **doc,
        "spec": {
            "hosts": ["reviews"],
            "http": [{"route": [{"destination": {"host": "reviews"}}], "timeout": "1s"}],
        },
    }
    refused = {**doc, "spec": {"hosts": ["reviews"]}}  # nothing below spec can fix it
    assert strategies.accepted(refused) is None
