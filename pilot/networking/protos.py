"""Small protobuf helpers every builder uses: Any packing, durations, percentages."""

from __future__ import annotations

from typing import Any

from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2

from api.checks import duration_seconds

__all__ = ["duration", "fraction", "pack"]


def pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def duration(text: str | None) -> duration_pb2.Duration | None:
    """An Istio duration string ('1.5s', '100ms') as a protobuf Duration; None if unset."""
    seconds = duration_seconds(text) if text else None
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def fraction(percent: float) -> percent_pb2.FractionalPercent:
    """Istio's 0..100 percentage as Envoy's per-million fraction."""
    return percent_pb2.FractionalPercent(
        numerator=round(percent * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )
