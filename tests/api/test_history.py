"""api.history: keys, entries, pruning and the default rollback target (pure)."""

from __future__ import annotations

import json

import pytest

from api.history import (
    HISTORY_PREFIX,
    Revision,
    decode_entry,
    default_target,
    encode_entry,
    history_key,
    next_revision,
    revision_of,
    to_prune,
)
from api.store import PREFIX, key_for


def test_history_lives_outside_what_pilot_watches() -> None:
    assert not HISTORY_PREFIX.startswith(PREFIX) and not PREFIX.startswith(HISTORY_PREFIX)
    assert history_key("VirtualService", "shop", "reviews", 3) == (
        "mesh/history/VirtualService/shop/reviews/3"
    )
    # Cluster-scoped kinds are laid out as their config keys are.
    kind = "GatewayClass.gateway.networking.k8s.io"
    assert history_key(kind, "", "gc", 1).removeprefix(HISTORY_PREFIX) == (
        key_for(kind, "", "gc").removeprefix(PREFIX) + "/1"
    )


def test_revisions_count_up_and_only_the_newest_are_kept() -> None:
    keys = [history_key("VirtualService", "ns", "r", n) for n in (9, 10, 2, 11)]
    assert next_revision([]) == 1 and next_revision(keys) == 12
    assert to_prune(keys, 2) == [keys[2], keys[0]]  # 2 and 9: oldest first, by number
    assert to_prune(keys, 4) == [] and to_prune(keys, 20) == []
    assert [revision_of(k) for k in ("a/b/7", "a/b/07", "a/b/x", "a/b/")] == [7, None, None, None]


def test_an_entry_round_trips_and_damage_is_left_out() -> None:
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "spec": {}}
    text = encode_entry("update", "alice", 41, json.dumps(doc), at="2026-12-03T05:31:43Z")
    assert json.loads(text)["resource"] == doc and "resourceVersion" not in json.loads(text)
    got = decode_entry("mesh/history/VirtualService/ns/r/3", text.encode(), 57)
    assert got == Revision(3, "update", "2026-12-03T05:31:43Z", "alice", 41, 57, doc)
    baseline = encode_entry("baseline", "", 0, json.dumps(doc), resource_version=12)
    assert decode_entry("p/1", baseline, 99).resource_version == 12  # type: ignore[union-attr]
    deleted = decode_entry("p/4", encode_entry("delete", "bob", 57, None), 60)
    assert deleted is not None and deleted.deleted
    for key, raw in [
        ("p/1", b"not json"),
        ("p/1", b"[]"),
        ("p/x", text.encode()),
        ("p/1", text.replace('"update"', '"explode"').encode()),
        ("p/1", text.replace('"by":"alice"', '"by":7').encode()),
        ("p/1", b"\xff"),
    ]:
        assert decode_entry(key, raw, 1) is None, raw


def _rev(n: int, version: int, deleted: bool = False) -> Revision:
    return Revision(n, "update", "", "", 0, version, None if deleted else {"n": n})


@pytest.mark.parametrize(
    ("revisions", "current", "expected"),
    [
        ([], 10, None),
        ([_rev(1, 10)], 10, None),  # nothing before the only version
        ([_rev(2, 20), _rev(1, 10)], 20, 1),  # the one before the current
        ([_rev(2, 20), _rev(1, 10)], 25, 2),  # stored around Galley: the newest recorded
        ([_rev(2, 20, deleted=True), _rev(1, 10)], None, 1),  # deleted: back to before
        ([_rev(2, 20), _rev(1, 10)], None, 2),  # gone without a record: the newest
        ([_rev(3, 30, deleted=True), _rev(2, 20)], 40, 3),  # re-created around Galley
    ],
)
def test_default_target(revisions: list[Revision], current: int | None, expected: int) -> None:
    target = default_target(revisions, current)
    assert (target.revision if target else None) == expected
