"""Config history: every version Galley stored, kept beside the config in Consul KV.

Layout: ``mesh/history/<kind>/<namespace>/<name>/<revision>`` (``<kind>/<name>/...``
for a cluster-scoped kind), one key per revision; revisions count up from 1 per
resource and go on across a delete and a re-create. The value is JSON:

    {"operation": "create" | "update" | "delete" | "rollback" | "baseline",
     "at": "2026-12-03T05:31:43Z", "by": "<token name>", "replaced": <resourceVersion>,
     "resource": <the resource as stored, canonical> | null (a delete)}

Each entry is written in the same Consul transaction as the config write it
records (the write's compare-and-set decides both), so the entry's ModifyIndex is
the resourceVersion that write produced. A "baseline" entry records a version
stored before history was kept (written just before the first change to it), and
carries that version as "resourceVersion" itself. Only the newest entries are kept
(Galley's --history-size); older ones are pruned after the write.

This module is the pure part (keys, entries, which revision a rollback goes to);
`api.store.ConfigStore` does the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "HISTORY_PREFIX",
    "OPERATIONS",
    "Revision",
    "decode_entry",
    "default_target",
    "encode_entry",
    "history_key",
    "history_prefix",
    "next_revision",
    "revision_of",
    "to_prune",
]

HISTORY_PREFIX = "mesh/history/"
DEFAULT_HISTORY_SIZE = 20
OPERATIONS = ("create", "update", "delete", "rollback", "baseline")


def history_prefix(kind: str, namespace: str, name: str) -> str:
    """Where one resource's revisions live (with the trailing slash: `reviews/` is not
    `reviews-v2/`). `namespace`: "" for a cluster-scoped kind, as `api.store.key_for`."""
    where = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
    return f"{HISTORY_PREFIX}{where}/"


def history_key(kind: str, namespace: str, name: str, revision: int) -> str:
    return f"{history_prefix(kind, namespace, name)}{revision}"


def revision_of(key: str) -> int | None:
    """The revision a history key names (None: not a history key of ours)."""
    last = key.rsplit("/", 1)[-1]
    return int(last) if last.isdigit() and last[0] != "0" else None


def next_revision(keys: Sequence[str]) -> int:
    return max((r for r in map(revision_of, keys) if r is not None), default=0) + 1


def to_prune(keys: Sequence[str], keep: int) -> list[str]:
    """The keys beyond the newest `keep` revisions, oldest first."""
    numbered = sorted((r, k) for k in keys if (r := revision_of(k)) is not None)
    return [k for _, k in numbered[: max(0, len(numbered) - keep)]]


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_entry(
    operation: str,
    by: str,
    replaced: int,
    resource_json: str | None,
    at: str | None = None,
    resource_version: int | None = None,
) -> str:
    """An entry's stored JSON. `resource_json`: the canonical JSON that was stored (None
    for a delete); `resource_version` only for a baseline (others take the key's
    ModifyIndex, which is the write's)."""
    entry: dict[str, Any] = {
        "operation": operation,
        "at": at or now_utc(),
        "by": by,
        "replaced": replaced,
        "resource": json.loads(resource_json) if resource_json is not None else None,
    }
    if resource_version is not None:
        entry["resourceVersion"] = resource_version
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Revision:
    revision: int
    operation: str
    at: str
    by: str
    replaced: int  # the resourceVersion this write replaced (0: there was none)
    resource_version: int  # the resourceVersion the write produced (a delete: its index)
    document: dict[str, Any] | None  # the resource as stored; None for a delete

    @property
    def deleted(self) -> bool:
        return self.document is None


def decode_entry(key: str, raw: bytes | str | None, modify_index: int) -> Revision | None:
    """An entry read back (None: not one of ours, or damaged; history is advice, the
    config itself is the truth)."""
    revision = revision_of(key)
    try:
        text = raw.decode() if isinstance(raw, bytes) else (raw or "")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if revision is None or not isinstance(value, dict):
        return None
    document = value.get("resource")
    operation, at, by = value.get("operation"), value.get("at"), value.get("by")
    replaced, version = value.get("replaced", 0), value.get("resourceVersion", modify_index)
    if not (
        operation in OPERATIONS
        and isinstance(at, str)
        and isinstance(by, str)
        and isinstance(replaced, int)
        and isinstance(version, int)
        and (document is None or isinstance(document, dict))
    ):
        return None
    return Revision(revision, operation, at, by, replaced, version, document)


def default_target(revisions: Sequence[Revision], current: int | None) -> Revision | None:
    """Where a rollback without --to goes: the version before the current one.

    `revisions` newest first; `current`: the stored resourceVersion (None: not stored).
    The newest revision is the current state when it produced the stored version (or,
    with nothing stored, when it was a delete); then the one before it is the target.
    Otherwise what is stored was never recorded (written around Galley), and the
    newest recorded version is the one before it.
    """
    if not revisions:
        return None
    newest = revisions[0]
    is_current = (
        newest.deleted
        if current is None
        else (not newest.deleted and newest.resource_version == current)
    )
    if not is_current:
        return newest
    return revisions[1] if len(revisions) > 1 else None
