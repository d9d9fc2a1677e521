"""One current workload certificate per identity, issued by the CA and rotated at about
half its lifetime (with jitter); SDS streams subscribe to hear of a rotation."""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from citadel.ca import CertificateAuthority, IssuedCert
from citadel.metrics import CitadelMetrics

__all__ = ["IdentityCache"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    cert: IssuedCert
    rotate_at: float  # wall-clock seconds
    subscribers: set[asyncio.Event] = field(default_factory=set)


class IdentityCache:
    """One current certificate per identity, rotated before it expires."""

    def __init__(
        self,
        ca: CertificateAuthority,
        ttl: datetime.timedelta,
        metrics: CitadelMetrics,
        *,
        rotate_fraction: float = 0.5,
        jitter: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ca = ca
        self.ttl = ttl
        self._metrics = metrics
        self._fraction = rotate_fraction
        self._jitter = jitter
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._changed = asyncio.Event()

    def _rotate_at(self, cert: IssuedCert) -> float:
        start = cert.not_before.timestamp() + 60  # not_before is backdated a minute for skew
        life = cert.not_after.timestamp() - start
        share = self._fraction + random.uniform(-self._jitter, self._jitter)
        return start + life * max(0.05, min(0.95, share))

    def _issue(self, namespace: str, service_account: str) -> IssuedCert:
        cert = self.ca.issue(namespace, service_account, self.ttl)
        self._metrics.issued.inc()
        log.info(
            "issued %s (serial %x, valid until %s)",
            cert.identity,
            cert.serial,
            cert.not_after.isoformat(),
        )
        return cert

    def get(self, namespace: str, service_account: str) -> IssuedCert:
        key = (namespace, service_account)
        entry = self._entries.get(key)
        if entry is None or self._clock() >= entry.rotate_at:
            cert = self._issue(namespace, service_account)
            if entry is None:
                entry = self._entries[key] = _Entry(cert, self._rotate_at(cert))
            else:
                entry.cert, entry.rotate_at = cert, self._rotate_at(cert)
            self._changed.set()
        return entry.cert

    def subscribe(self, namespace: str, service_account: str) -> asyncio.Event:
        self.get(namespace, service_account)
        event = asyncio.Event()
        self._entries[(namespace, service_account)].subscribers.add(event)
        return event

    def unsubscribe(self, namespace: str, service_account: str, event: asyncio.Event) -> None:
        entry = self._entries.get((namespace, service_account))
        if entry is not None:
            entry.subscribers.discard(event)

    def rotate_due(self) -> int:
        """Rotate every identity whose time has come; wake its streams. Returns how many."""
        now, rotated = self._clock(), 0
        for (ns, sa), entry in self._entries.items():
            if now >= entry.rotate_at:
                entry.cert = self._issue(ns, sa)
                entry.rotate_at = self._rotate_at(entry.cert)
                self._metrics.rotations.inc()
                rotated += 1
                for event in entry.subscribers:
                    event.set()
        return rotated

    async def run(self) -> None:
        while True:
            self._changed.clear()
            self.rotate_due()
            upcoming = [e.rotate_at for e in self._entries.values()]
            wait = max(0.05, min(upcoming) - self._clock()) if upcoming else 3600.0
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(wait, 3600.0))
            except TimeoutError:
                pass
