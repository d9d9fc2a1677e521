"""Reading SotW requests cheaply: the resource_names block, as bytes.

Every EDS ACK from Envoy repeats every cluster name it watches (48 KB at
1,000 clusters, from every proxy, on every push). Turning those into Python
strings each time costs more than the push itself, and they almost never
change. Envoy writes fields in field-number order, so the names (field 3)
sit in one run between node (2) and type_url (4): we cut that run out as
bytes and look it up; only an unseen run is parsed into names.
"""

from __future__ import annotations

from collections import OrderedDict

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from pilot.xds import typeurls

__all__ = ["NameSets", "split_names"]

_NAMES_TAG = 0x1A  # field 3, length-delimited
_TYPE_URL_TAG = 0x22  # field 4, length-delimited


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(raw) or shift > 63:
            raise ValueError("truncated varint")
        byte = raw[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def _type_url_field(type_url: str) -> bytes:
    encoded = type_url.encode()
    return bytes([_TYPE_URL_TAG, len(encoded)]) + encoded


# Only named (non-wildcard) subscriptions carry long name lists.
_TYPE_FIELDS = tuple(_type_url_field(t) for t in (typeurls.ENDPOINT, typeurls.ROUTE))


def split_names(raw: bytes) -> tuple[bytes, bytes] | None:
    """(the request without its resource_names, the resource_names run), or None.

    None means "not the usual layout" (no names, fields out of order, another
    type): the caller parses the whole request instead.
    """
    pos = 0
    try:
        while pos < len(raw) and raw[pos] in (0x0A, 0x12):  # version_info, node
            length, pos = _varint(raw, pos + 1)
            pos += length
    except ValueError:
        return None
    if pos >= len(raw) or raw[pos] != _NAMES_TAG:
        return None
    for field in _TYPE_FIELDS:
        # The first match after the names is the type_url field itself: anything
        # later (an error message quoting a type URL) comes after it on the wire.
        end = raw.find(field, pos)
        if end > pos:
            return raw[:pos] + raw[end:], raw[pos:end]
    return None


# A request may name at most this many resources: ten times the largest mesh the
# benchmarks run. More is refused (INVALID_ARGUMENT), never remembered.
MAX_NAMES = 100_000


class NameSets:
    """Subscription sets by their wire bytes, shared by every stream that sends them.

    Bounded by what it holds, not by how many: a client naming thousands of
    made-up resources per request only evicts older entries (least recently
    used first), whatever the number of streams."""

    def __init__(self, capacity: int = 1024, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._held = 0  # bytes of the wire blocks held
        # Keyed by a fingerprint, not the block: hashing 50 KB on every ACK costs more
        # than comparing it with the one block held under its fingerprint.
        self._by_bytes: OrderedDict[tuple[int, bytes, bytes], tuple[bytes, frozenset[str]]] = (
            OrderedDict()
        )
        self._by_names: dict[frozenset[str], frozenset[str]] = {}
        self._names_held = 0

    def from_wire(self, block: bytes) -> frozenset[str] | None:
        key = (len(block), block[:48], block[-48:])
        found = self._by_bytes.get(key)
        if found is not None and found[0] == block:
            self._by_bytes.move_to_end(key)
            return found[1]
        try:
            parsed = discovery_pb2.DiscoveryRequest.FromString(block)
        except DecodeError:
            return None
        only_names = not (
            parsed.version_info
            or parsed.type_url
            or parsed.response_nonce
            or parsed.HasField("node")
            or parsed.HasField("error_detail")
        )
        if not only_names or parsed.SerializeToString() != block:
            return None
        names = self.intern(parsed.resource_names)
        replaced = self._by_bytes.pop(key, None)  # another block of that fingerprint
        if replaced is not None:
            self._held -= len(replaced[0])
        self._by_bytes[key] = (block, names)
        self._held += len(block)
        while self._by_bytes and (
            len(self._by_bytes) > self._capacity or self._held > self._max_bytes
        ):
            _, (old, _) = self._by_bytes.popitem(last=False)
            self._held -= len(old)
        return names

    @property
    def held_bytes(self) -> int:
        return self._held

    def intern(self, names: object) -> frozenset[str]:
        fs = frozenset(names)  # type: ignore[call-overload]
        if len(fs) > MAX_NAMES:
            raise ValueError(f"a request names {len(fs)} resources, more than {MAX_NAMES}")
        found = self._by_names.get(fs)
        if found is None:
            # Sets differ in size by orders of magnitude: bound the names held.
            if len(self._by_names) > self._capacity or self._names_held > 2 * MAX_NAMES:
                self._by_names.clear()
                self._names_held = 0
            found = self._by_names[fs] = fs
            self._names_held += len(fs)
        return found
