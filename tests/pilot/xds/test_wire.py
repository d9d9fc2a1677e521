"""Cutting the resource_names run out of a request, as Envoy serializes it."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from pilot.xds import typeurls
from pilot.xds.wire import NameSets, split_names

NAMES = [f"outbound|80||svc-{i}.default.svc.cluster.local" for i in range(300)]


def _ack(names: list[str], nonce: str, version: str = "v1") -> bytes:
    return discovery_pb2.DiscoveryRequest(
        version_info=version, resource_names=names, type_url=typeurls.ENDPOINT, response_nonce=nonce
    ).SerializeToString()


def test_split_keeps_everything_but_the_names() -> None:
    raw = _ack(NAMES, "n-7")
    split = split_names(raw)
    assert split is not None
    rest, block = split
    req = discovery_pb2.DiscoveryRequest.FromString(rest)
    assert (req.version_info, req.response_nonce, req.type_url) == ("v1", "n-7", typeurls.ENDPOINT)
    assert list(req.resource_names) == []
    assert list(discovery_pb2.DiscoveryRequest.FromString(block).resource_names) == NAMES


def test_same_names_with_other_nonces_share_one_set() -> None:
    sets = NameSets()
    a = sets.from_wire(split_names(_ack(NAMES, "n-1"))[1])  # type: ignore[index]
    b = sets.from_wire(split_names(_ack(NAMES, "n-2", "v2"))[1])  # type: ignore[index]
    assert a is b and a == frozenset(NAMES)
    assert sets.intern(list(NAMES)) is a


def test_blocks_alike_at_both_ends_are_told_apart() -> None:
    """Sets are found by a fingerprint (length, both ends), then compared in full."""
    sets = NameSets()
    other = [*NAMES[:100], *(n.replace("svc-", "app-") for n in NAMES[100:200]), *NAMES[200:]]
    a_block = split_names(_ack(NAMES, "n-1"))[1]  # type: ignore[index]
    b_block = split_names(_ack(other, "n-1"))[1]  # type: ignore[index]
    assert len(a_block) == len(b_block) and a_block[:48] == b_block[:48] != b""
    assert a_block[-48:] == b_block[-48:] and a_block != b_block
    for _ in range(2):
        assert sets.from_wire(a_block) == frozenset(NAMES)
        assert sets.from_wire(b_block) == frozenset(other)
    assert sets.held_bytes == len(b_block)  # the newer one replaced the older


def test_unusual_layouts_fall_back_to_a_full_parse() -> None:
    wildcard = discovery_pb2.DiscoveryRequest(type_url=typeurls.CLUSTER).SerializeToString()
    assert split_names(wildcard) is None
    assert split_names(b"\x1a\x05abc") is None  # truncated, no type URL
    nack = discovery_pb2.DiscoveryRequest(
        resource_names=["a"],
        type_url=typeurls.ENDPOINT,
        response_nonce="n",
        error_detail=status_pb2.Status(message=typeurls.ENDPOINT + " in an error"),
    ).SerializeToString()
    # The error text quotes a type URL after the real one: the cut must not be fooled.
    split = split_names(nack)
    assert split is not None
    assert NameSets().from_wire(split[1]) == frozenset({"a"})
    rest = discovery_pb2.DiscoveryRequest.FromString(split[0])
    assert rest.error_detail.message == typeurls.ENDPOINT + " in an error"
    unknown = discovery_pb2.DiscoveryRequest(resource_names=["a"], type_url="x").SerializeToString()
    assert split_names(unknown) is None


def test_name_sets_are_bounded_by_bytes_held_not_by_count() -> None:
    from envoy.service.discovery.v3 import discovery_pb2

    from pilot.xds.wire import NameSets

    sets = NameSets(capacity=10_000, max_bytes=1_000_000)
    for i in range(300):  # 300 requests of 2,000 made-up names each: ~14 MB of blocks
        names = [f"outbound|80||made-up-{i}-{n}.example" for n in range(2_000)]
        block = discovery_pb2.DiscoveryRequest(resource_names=names).SerializeToString()
        assert sets.from_wire(block) == frozenset(names)
    assert sets.held_bytes <= 1_000_000


def test_a_request_naming_too_many_resources_is_refused() -> None:
    import pytest

    from pilot.xds.wire import MAX_NAMES, NameSets

    with pytest.raises(ValueError, match="more than"):
        NameSets().intern(str(i) for i in range(MAX_NAMES + 1))
