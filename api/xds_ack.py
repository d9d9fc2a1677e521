"""The SotW nonce / version / ACK / NACK rule, as one pure function.

`decide(watch, request)` says whether a DiscoveryRequest needs a response and
returns the stream's new watch state for that type; it does no I/O, so every
case is a unit test (tests/pilot/xds/test_ack.py); shared by
Pilot (ADS) and Citadel (SDS).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

__all__ = ["Decision", "Reason", "Request", "Watch", "decide"]


class Reason(enum.Enum):
    INITIAL = "initial"  # first request for this type on this stream (or a reconnect)
    RESUBSCRIBE = "resubscribe"  # a request without a nonce on a known type
    ACK = "ack"
    ACK_NEW_NAMES = "ack-new-names"  # ACK that also subscribes to more names
    NACK = "nack"
    STALE = "stale"  # answers a response that is no longer the latest


@dataclass(frozen=True, slots=True)
class Request:
    """The fields of a DiscoveryRequest that the rule looks at."""

    type_url: str
    names: frozenset[str]
    version_info: str = ""
    response_nonce: str = ""
    error_detail: str | None = None


@dataclass(frozen=True, slots=True)
class Watch:
    """What one stream has asked for and been sent, for one type."""

    type_url: str
    names: frozenset[str]
    nonce_sent: str = ""
    version_sent: str = ""
    version_acked: str = ""
    nack: str | None = None  # Envoy's error_detail for the last NACK, until an ACK

    @property
    def wildcard(self) -> bool:
        return not self.names


@dataclass(frozen=True, slots=True)
class Decision:
    respond: bool
    reason: Reason
    watch: Watch
    # Names the response should carry when it may be partial (new EDS/RDS
    # names after an ACK); None means "everything watched".
    only: frozenset[str] | None = None


def decide(watch: Watch | None, request: Request) -> Decision:
    if watch is None:
        # A new stream, or Envoy reconnecting after a Pilot restart with the
        # version and nonce of a previous server: either way it needs config.
        fresh = Watch(request.type_url, request.names, version_acked=request.version_info)
        return Decision(True, Reason.INITIAL, fresh)

    if not request.response_nonce:
        return Decision(True, Reason.RESUBSCRIBE, replace(watch, names=request.names))

    if request.response_nonce != watch.nonce_sent:
        # Envoy answers an older response; a newer one is already on its way.
        return Decision(False, Reason.STALE, watch)

    if request.error_detail is not None:
        # Keep what Envoy last accepted in force; never re-send the bad config.
        return Decision(
            False, Reason.NACK, replace(watch, names=request.names, nack=request.error_detail)
        )

    acked = replace(watch, names=request.names, version_acked=request.version_info, nack=None)
    added = request.names - watch.names
    if added and not watch.wildcard:
        return Decision(True, Reason.ACK_NEW_NAMES, acked, only=added)
    return Decision(False, Reason.ACK, acked)
