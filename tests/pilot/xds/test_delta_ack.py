"""The Delta ACK/NACK rule, case by case (pure: no stream, no I/O)."""

from __future__ import annotations

from pilot.xds import typeurls
from pilot.xds.delta import DeltaRequest, DeltaWatch, Outcome, decide

CDS, EDS = typeurls.CLUSTER, typeurls.ENDPOINT


def test_first_wildcard_request_subscribes_to_everything() -> None:
    watch, decision = decide(None, DeltaRequest(CDS))
    assert watch.wildcard and decision.outcome is Outcome.SUBSCRIBE
    assert decision.send == frozenset()


def test_first_request_with_names_is_not_wildcard_and_sends_them() -> None:
    watch, decision = decide(None, DeltaRequest(EDS, subscribe=frozenset({"a", "b"})))
    assert not watch.wildcard and watch.names == {"a", "b"}
    assert decision == decision.__class__(Outcome.SUBSCRIBE, frozenset({"a", "b"}))


def test_initial_versions_are_what_the_proxy_already_has() -> None:
    watch, _ = decide(None, DeltaRequest(CDS, initial_versions=(("c1", "v1"),)))
    assert watch.known == {"c1": "v1"}
    assert watch.basis is None  # held only by this proxy: its diff is its own


def test_new_watches_holding_nothing_share_one_basis() -> None:
    """So the first diff of proxies alike is computed once, not once per proxy."""
    a, _ = decide(None, DeltaRequest(EDS, subscribe=frozenset({"a"})))
    b, _ = decide(None, DeltaRequest(EDS, subscribe=frozenset({"b"})))
    assert a.known == b.known == {}
    assert a.basis == b.basis is not None


def test_ack_of_the_latest_response() -> None:
    watch = DeltaWatch(wildcard=True, nonce_sent="d2", acked=False, pending={"d2": ("c1",)})
    watch, decision = decide(watch, DeltaRequest(CDS, response_nonce="d2"))
    assert decision.outcome is Outcome.ACK and watch.acked and watch.pending == {}


def test_ack_of_an_older_response_leaves_the_latest_unacked() -> None:
    watch = DeltaWatch(wildcard=True, nonce_sent="d3", acked=False, pending={"d2": (), "d3": ()})
    watch, decision = decide(watch, DeltaRequest(CDS, response_nonce="d2"))
    assert decision.outcome is Outcome.ACK and not watch.acked and "d3" in watch.pending


def test_nack_forgets_what_the_response_carried_so_it_is_sent_again() -> None:
    watch = DeltaWatch(
        wildcard=True, known={"c1": "v2", "c2": "v1"}, nonce_sent="d4", pending={"d4": ("c1",)}
    )
    watch, decision = decide(watch, DeltaRequest(CDS, response_nonce="d4", error_detail="bad"))
    assert decision.outcome is Outcome.NACK
    assert watch.known == {"c2": "v1"} and watch.nack == "bad" and not watch.acked


def test_ack_that_subscribes_to_more_names_sends_those() -> None:
    watch = DeltaWatch(
        wildcard=False, names=frozenset({"a"}), nonce_sent="d1", pending={"d1": ("a",)}
    )
    watch, decision = decide(
        watch, DeltaRequest(EDS, subscribe=frozenset({"b"}), response_nonce="d1")
    )
    assert decision.outcome is Outcome.SUBSCRIBE and decision.send == frozenset({"b"})
    assert watch.names == {"a", "b"}


def test_unsubscribe_drops_the_name_and_what_the_proxy_had() -> None:
    watch = DeltaWatch(wildcard=False, names=frozenset({"a", "b"}), known={"a": "1", "b": "1"})
    watch, decision = decide(
        watch, DeltaRequest(EDS, unsubscribe=frozenset({"b"}), response_nonce="d9")
    )
    assert decision.outcome is Outcome.ACK
    assert watch.names == {"a"} and watch.known == {"a": "1"}


def test_explicit_wildcard_subscription() -> None:
    watch = DeltaWatch(wildcard=False, names=frozenset({"a"}))
    watch, decision = decide(watch, DeltaRequest(CDS, subscribe=frozenset({"*"})))
    assert watch.wildcard and decision.outcome is Outcome.SUBSCRIBE


def test_a_nack_copies_a_shared_map_before_forgetting() -> None:
    held = {"c1": "v2", "c2": "v1"}
    mine = DeltaWatch(
        wildcard=True, known=held, shared=True, nonce_sent="d4", pending={"d4": ("c1",)}
    )
    other = DeltaWatch(wildcard=True, known=held, shared=True)
    decide(mine, DeltaRequest(CDS, response_nonce="d4", error_detail="bad"))
    assert mine.known == {"c2": "v1"} and not mine.shared
    assert other.known is held and held == {"c1": "v2", "c2": "v1"}  # the others keep theirs
    decide(other, DeltaRequest(EDS, unsubscribe=frozenset({"absent"})))
    assert other.known is held  # nothing to forget: nothing copied
