"""Serialized resources and hand-assembled DiscoveryResponses.

A resource is serialized to its `Any` bytes once per snapshot and shared by
every proxy that gets it; a response is those bytes concatenated under the
DiscoveryResponse field tags, so a push to N proxies serializes nothing N
times. Per-resource versions are content hashes (Delta xDS sends them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

__all__ = ["Resource", "encode_delta_response", "encode_response", "make_resource", "set_version"]


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    version: str  # content hash of the serialized resource
    any_bytes: bytes  # a google.protobuf.Any holding the resource
    value_bytes: bytes  # the resource itself, for config dumps and debugging


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def make_resource(type_url: str, name: str, message: Message) -> Resource:
    value = message.SerializeToString(deterministic=True)
    # google.protobuf.Any: type_url = 1, value = 2.
    any_bytes = _field(1, type_url.encode()) + _field(2, value)
    version = hashlib.blake2b(value, digest_size=8).hexdigest()
    return Resource(name, version, any_bytes, value)


def set_version(resources: Sequence[Resource]) -> str:
    """A version for a set of resources: the same set gives the same version."""
    digest = hashlib.blake2b(digest_size=8)
    for res in resources:
        digest.update(res.name.encode())
        digest.update(res.version.encode())
    return digest.hexdigest()


def encode_response(
    version: str, type_url: str, nonce: str, resources: Sequence[Resource]
) -> bytes:
    """Bytes of a DiscoveryResponse (version_info=1, resources=2, type_url=4, nonce=5)."""
    parts = [_field(1, version.encode())]
    parts.extend(_field(2, res.any_bytes) for res in resources)
    parts.append(_field(4, type_url.encode()))
    parts.append(_field(5, nonce.encode()))
    return b"".join(parts)


def encode_delta_response(
    system_version: str,
    type_url: str,
    nonce: str,
    resources: Sequence[Resource],
    removed: Sequence[str],
) -> bytes:
    """Bytes of a DeltaDiscoveryResponse.

    Fields: system_version_info=1, resources=2 (Resource: version=1,
    resource=2, name=3), type_url=4, nonce=5, removed_resources=6.
    """
    parts = [_field(1, system_version.encode())]
    for res in resources:
        body = (
            _field(1, res.version.encode())
            + _field(2, res.any_bytes)
            + _field(3, res.name.encode())
        )
        parts.append(_field(2, body))
    parts.append(_field(4, type_url.encode()))
    parts.append(_field(5, nonce.encode()))
    parts.extend(_field(6, name.encode()) for name in removed)
    return b"".join(parts)
