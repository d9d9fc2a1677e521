"""The SotW ACK/NACK rule, case by case."""

from __future__ import annotations

from dataclasses import replace

from api.xds_ack import Reason, Request, Watch, decide
from pilot.xds import typeurls

EDS = typeurls.ENDPOINT
A, AB = frozenset({"a"}), frozenset({"a", "b"})


def sent(names: frozenset[str] = A, nonce: str = "n1", version: str = "v1") -> Watch:
    return Watch(EDS, names, nonce_sent=nonce, version_sent=version, version_acked="v0")


def test_first_request_on_a_stream_is_answered() -> None:
    d = decide(None, Request(EDS, A))
    assert (d.respond, d.reason) == (True, Reason.INITIAL)
    assert d.watch.names == A and d.watch.nonce_sent == ""


def test_reconnect_with_an_old_servers_nonce_is_answered() -> None:
    d = decide(None, Request(EDS, A, version_info="old", response_nonce="gone-server-7"))
    assert (d.respond, d.reason) == (True, Reason.INITIAL)
    assert d.watch.version_acked == "old"


def test_ack_of_the_latest_response_records_the_version_and_sends_nothing() -> None:
    d = decide(sent(), Request(EDS, A, version_info="v1", response_nonce="n1"))
    assert (d.respond, d.reason) == (False, Reason.ACK)
    assert d.watch.version_acked == "v1" and d.watch.nack is None


def test_ack_that_adds_names_gets_only_the_new_ones() -> None:
    d = decide(sent(), Request(EDS, AB, version_info="v1", response_nonce="n1"))
    assert (d.respond, d.reason, d.only) == (True, Reason.ACK_NEW_NAMES, frozenset({"b"}))
    assert d.watch.names == AB


def test_ack_that_drops_names_sends_nothing() -> None:
    d = decide(sent(AB), Request(EDS, A, version_info="v1", response_nonce="n1"))
    assert (d.respond, d.reason) == (False, Reason.ACK)
    assert d.watch.names == A


def test_wildcard_types_never_answer_an_ack() -> None:
    w = Watch(typeurls.CLUSTER, frozenset(), nonce_sent="n1", version_sent="v1")
    d = decide(w, Request(typeurls.CLUSTER, frozenset(), version_info="v1", response_nonce="n1"))
    assert (d.respond, d.reason) == (False, Reason.ACK)


def test_nack_is_recorded_and_not_answered() -> None:
    d = decide(
        sent(), Request(EDS, A, version_info="v0", response_nonce="n1", error_detail="bad cluster")
    )
    assert (d.respond, d.reason) == (False, Reason.NACK)
    assert d.watch.nack == "bad cluster"
    assert d.watch.version_acked == "v0"  # the last good version stays in force


def test_ack_after_a_nack_clears_it() -> None:
    nacked = replace(sent(nonce="n2", version="v2"), nack="bad")
    d = decide(nacked, Request(EDS, A, version_info="v2", response_nonce="n2"))
    assert d.reason is Reason.ACK and d.watch.nack is None and d.watch.version_acked == "v2"


def test_stale_nonce_is_ignored_even_if_it_is_a_nack() -> None:
    for detail in (None, "old problem"):
        d = decide(sent(nonce="n2"), Request(EDS, AB, response_nonce="n1", error_detail=detail))
        assert (d.respond, d.reason) == (False, Reason.STALE)
        assert d.watch == sent(nonce="n2")


def test_request_without_nonce_on_a_known_type_is_answered() -> None:
    d = decide(sent(), Request(EDS, AB))
    assert (d.respond, d.reason) == (True, Reason.RESUBSCRIBE)
    assert d.watch.names == AB and d.watch.nonce_sent == "n1"


# --- Named types (EDS, RDS, ECDS): an empty name list means "none", not "all" ---


def test_unsubscribing_from_a_named_type_settles_it_and_sends_nothing() -> None:
    """Envoy unsubscribed (all its EDS clusters went away): it would neither apply nor ACK
    another EDS response, so none is sent and nothing counts as outstanding."""
    for nonce in ("n1", "n0-stale"):
        d = decide(sent(), Request(EDS, frozenset(), "v0", nonce), wildcard_type=False)
        assert (d.respond, d.reason) == (False, Reason.UNSUBSCRIBE)
        assert d.watch.names == frozenset() and d.watch.version_acked == d.watch.version_sent


def test_a_first_empty_request_for_a_named_type_is_not_answered() -> None:
    d = decide(None, Request(EDS, frozenset()), wildcard_type=False)
    assert d.respond is False and d.watch.names == frozenset()


def test_subscribing_again_after_unsubscribing_is_answered_with_the_names() -> None:
    gone = decide(sent(), Request(EDS, frozenset(), "v1", "n1"), wildcard_type=False).watch
    d = decide(gone, Request(EDS, AB, "v1", "n1"), wildcard_type=False)
    assert (d.respond, d.reason, d.only) == (True, Reason.ACK_NEW_NAMES, AB)


def test_an_empty_request_for_a_wildcard_type_still_means_everything() -> None:
    cds = typeurls.CLUSTER
    d = decide(None, Request(cds, frozenset()), wildcard_type=True)
    assert (d.respond, d.reason) == (True, Reason.INITIAL)
