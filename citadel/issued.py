"""What Citadel issued: identity, serial and validity of each certificate, never a key.

A bounded, in-memory record (the newest `capacity` certificates): Galley's
dashboard reads it (`GET /v1/certificates`) to show each workload's expiry. A
restarted Citadel starts empty and fills again as sidecars fetch their
certificates, which SDS makes them do at once.
"""

from __future__ import annotations

import datetime
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["IssuedLog", "IssuedRecord"]


@dataclass(frozen=True, slots=True)
class IssuedRecord:
    identity: str
    serial: int
    not_before: datetime.datetime
    not_after: datetime.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "serial": f"{self.serial:x}",
            "notBefore": self.not_before.isoformat(),
            "notAfter": self.not_after.isoformat(),
        }


class IssuedLog:
    """The newest certificates issued, oldest first (signing runs on worker threads too)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._records: deque[IssuedRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, record: IssuedRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self) -> list[IssuedRecord]:
        with self._lock:
            return list(self._records)
