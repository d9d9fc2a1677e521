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
    UNSUBSCRIBE = "unsubscribe"  # no names left, for a type where that means none


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


def decide(watch: Watch | None, request: Request, wildcard_type: bool = True) -> Decision:
    """`wildcard_type`: an empty name list means "everything" (CDS, LDS); for the other
    types it means "nothing": Envoy unsubscribed, and a response would go unanswered
    (Envoy neither applies nor ACKs a type it watches nothing of)."""
    if not wildcard_type and not request.names:
        # Unsubscribed, whatever the nonce: nothing is outstanding for a type Envoy
        # holds nothing of (an answer in flight will be dropped unanswered).
        if watch is None:
            return Decision(False, Reason.INITIAL, Watch(request.type_url, frozenset()))
        if request.error_detail is not None and request.response_nonce == watch.nonce_sent:
            return Decision(
                False, Reason.NACK, replace(watch, names=frozenset(), nack=request.error_detail)
            )
        settled = replace(watch, names=frozenset(), version_acked=watch.version_sent, nack=None)
        return Decision(False, Reason.UNSUBSCRIBE, settled)
    return _decide(watch, request, wildcard_type)


def _decide(watch: Watch | None, request: Request, wildcard_type: bool) -> Decision:
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

    # Built directly, not by replace(): this runs for every ACK of every proxy.
    acked = Watch(
        watch.type_url, request.names, watch.nonce_sent, watch.version_sent, request.version_info
    )
    # Pilot interns name sets: an ACK naming what was watched carries the same object.
    added = frozenset() if request.names is watch.names else request.names - watch.names
    if added and (not wildcard_type or not watch.wildcard):
        return Decision(True, Reason.ACK_NEW_NAMES, acked, only=added)
    return Decision(False, Reason.ACK, acked)
