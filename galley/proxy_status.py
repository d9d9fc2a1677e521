"""Whether stored config reached the proxies: ask every Pilot replica, merge, one condition.

Each Pilot replica serves its own proxies and reports, per config resource, the
revision it pushed and the proxies that ACKed it, NACKed it (with Envoy's
error) or have yet to answer (``GET /debug/config_status``). Galley asks them
all at once with a short timeout and serves the merge in the resource's
``status``, as Istio's distribution tracking does:

- ``status.conditions``: a ``Reconciled`` condition. True when every affected
  proxy applied the stored revision; False with reason ``Nacked`` (the message
  names each proxy, the xDS type and Envoy's error) or ``Pending`` (proxies yet
  to answer, or a Pilot that has not built the revision yet); Unknown with
  reason ``PilotUnavailable`` when no Pilot answered. A GET never fails because
  Pilot is down.
- ``status.distribution``: the same, structured (revision, affected, acked,
  nacked, pending, unknown, and which Pilots answered), for tools such as
  ``meshctl apply --wait`` and ``meshctl get``'s SYNCED column.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from api.addrs import parse_addrs
from galley.bounded import read_bounded

__all__ = ["ASK_TIMEOUT_S", "PilotAnswer", "ask", "merge", "statuses", "with_status"]

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 1.0  # a GET waits at most this long for the slowest Pilot
MAX_ANSWER_BYTES = 64 * 1024 * 1024
CONDITION = "Reconciled"


@dataclass(frozen=True, slots=True)
class PilotAnswer:
    addr: str
    resources: Mapping[str, Mapping[str, Any]] | None  # None: this Pilot did not answer
    error: str = ""


async def _ask_one(
    session: aiohttp.ClientSession, host: str, port: int, resource: str | None
) -> PilotAnswer:
    addr = f"{host}:{port}"
    url = f"http://{addr}/debug/config_status"
    if resource is not None:
        url += f"?resource={quote(resource, safe='')}"
    try:
        async with session.get(url) as resp:
            if resp.status == 404 and resource is not None:
                return PilotAnswer(addr, {})  # it answered: it holds no such resource (yet)
            if resp.status != 200:
                return PilotAnswer(addr, None, f"HTTP {resp.status}")
            raw = await read_bounded(resp, MAX_ANSWER_BYTES)
            if raw is None:
                return PilotAnswer(addr, None, "answer too large")
            body = await asyncio.to_thread(json.loads, raw)
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        return PilotAnswer(addr, None, str(err) or type(err).__name__)
    except ValueError as err:
        return PilotAnswer(addr, None, f"not a config status: {err}")
    found = body.get("resources") if isinstance(body, dict) else None
    if not isinstance(found, dict):
        return PilotAnswer(addr, None, "not a config status")
    return PilotAnswer(addr, found)


async def ask(
    addrs: Sequence[tuple[str, int]], resource: str | None = None, wait_s: float = ASK_TIMEOUT_S
) -> list[PilotAnswer]:
    """Every Pilot's config status (of one resource, or all), asked concurrently."""
    limits = aiohttp.ClientTimeout(total=wait_s)
    async with aiohttp.ClientSession(timeout=limits) as session:
        return list(await asyncio.gather(*(_ask_one(session, h, p, resource) for h, p in addrs)))


def _names(values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def merge(ref: str, revision: int, answers: Sequence[PilotAnswer]) -> dict[str, Any]:
    """The resource's status part: its ``Reconciled`` condition and ``distribution``."""
    answered = [a for a in answers if a.resources is not None]
    silent = [f"{a.addr} ({a.error})" for a in answers if a.resources is None]
    acked: set[str] = set()
    pending: set[str] = set()
    unknown: set[str] = set()
    nacked: list[dict[str, str]] = []
    behind: list[str] = []
    affected: int | None = 0
    for a in answered:
        entry = (a.resources or {}).get(ref)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("revision"), int):
            behind.append(a.addr)
            continue
        if entry["revision"] < revision:
            behind.append(a.addr)
            continue
        acked.update(_names(entry.get("acked")))
        pending.update(_names(entry.get("pending")))
        unknown.update(_names(entry.get("unknown")))
        for n in entry.get("nacked") or []:
            if isinstance(n, Mapping):
                nacked.append({k: str(n.get(k, "")) for k in ("proxy", "type", "error")})
        count = entry.get("affected")
        affected = affected + count if isinstance(count, int) and affected is not None else None
    if affected is None:  # a Pilot no longer knows who it affected: count who answered
        affected = len(acked | pending | unknown | {n["proxy"] for n in nacked})
    distribution = {
        "revision": revision,
        "affected": affected,
        "acked": sorted(acked),
        "nacked": nacked,
        "pending": sorted(pending),
        "unknown": sorted(unknown),
        "pilots": {"asked": len(answers), "answered": len(answered), "behind": behind},
    }
    return {
        "conditions": [_condition(revision, distribution, silent)],
        "distribution": distribution,
    }


def _condition(revision: int, d: Mapping[str, Any], silent: Sequence[str]) -> dict[str, str]:
    note = f" (no answer from Pilot {', '.join(silent)})" if silent else ""
    if d["pilots"]["answered"] == 0:
        return _cond("Unknown", "PilotUnavailable", f"no Pilot answered{note}")
    if d["nacked"]:
        refusals = "; ".join(f"{n['proxy']} ({n['type']}): {n['error']}" for n in d["nacked"])
        waiting = f"; still pending: {', '.join(d['pending'])}" if d["pending"] else ""
        message = f"revision {revision} NACKed by {refusals}{waiting}{note}"
        return _cond("False", "Nacked", message)
    if d["pending"] or d["pilots"]["behind"]:
        parts = []
        if d["pending"]:
            parts.append(f"waiting for {', '.join(d['pending'])} to apply revision {revision}")
        if d["pilots"]["behind"]:
            parts.append(
                f"Pilot {', '.join(d['pilots']['behind'])} has not pushed revision {revision} yet"
            )
        return _cond("False", "Pending", "; ".join(parts) + note)
    if d["affected"] == 0:
        message = f"revision {revision} changed no connected proxy's config"
    else:
        count = len(d["acked"])
        message = f"revision {revision} applied by {count} {'proxy' if count == 1 else 'proxies'}"
        if d["unknown"]:
            message += f"; {len(d['unknown'])} more have later changes in flight"
    return _cond("True", CONDITION, message + note)


def _cond(status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": CONDITION, "status": status, "reason": reason, "message": message}


async def statuses(
    pilot_http_addr: str, revisions: Mapping[str, int], wait_s: float = ASK_TIMEOUT_S
) -> dict[str, dict[str, Any]]:
    """ref -> status part, for every stored resource given (ref -> stored revision)."""
    if not revisions:
        return {}
    one = next(iter(revisions)) if len(revisions) == 1 else None
    answers = await ask(parse_addrs(pilot_http_addr), one, wait_s)
    return {ref: merge(ref, revision, answers) for ref, revision in revisions.items()}


def with_status(body: dict[str, Any], part: Mapping[str, Any] | None) -> dict[str, Any]:
    """The served resource with the distribution status added beside any status it has
    (a Gateway API object's own conditions stay first)."""
    if part is None:
        return body
    status = dict(body.get("status") or {})
    status["conditions"] = [*(status.get("conditions") or []), *part["conditions"]]
    status["distribution"] = part["distribution"]
    body["status"] = status
    return body
