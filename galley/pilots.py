"""Galley asks Pilot for the plan of a change: every replica, at once.

Pilot computes the plan (`POST /debug/plan`, see pilot/plan.py): it has the
translation and the connected proxies; Galley only sends it the validated
documents. Each Pilot replica serves its own share of the proxies, so every one of
`--pilot-http-addr` is asked, and their groups are merged (the same change to the
same kind of proxy of the same service is one group, whichever Pilot serves it).

`envoy_gate` is what apply runs before storing anything: Envoy refusing the planned
config of any group refuses the apply (422, Envoy's own error); no Pilot answering
lets the apply go on, with a warning that Envoy did not check it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from fastapi import Request

from api.addrs import parse_addrs
from api.resources import Resource
from galley.bounded import read_bounded
from galley.errors import ApiError

__all__ = ["PLAN_TIMEOUT", "Answers", "check_warnings", "describe", "envoy_gate", "plan"]

# The longest Galley waits for a Pilot's plan (its Envoy checks included): past it the
# replica counts as not answering. A Pilot that is down is known in CONNECT_TIMEOUT.
PLAN_TIMEOUT = 30.0
CONNECT_TIMEOUT = 3.0
EXAMPLES = 5  # proxy ids named per merged group
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a plan carries diffs: generous, but bounded
NO_PILOT = "not checked by Envoy: no Pilot reachable"


@dataclass(slots=True)
class Answers:
    """The merged plans of every Pilot that answered."""

    answered: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # "HOST:PORT: why"
    groups: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    proxies: int = 0
    unchanged: int = 0
    envoy: dict[str, Any] = field(default_factory=dict)
    not_found: list[str] = field(default_factory=list)  # Pilots that do not serve the proxy

    def to_dict(self) -> dict[str, Any]:
        return {
            "pilots": {"answered": self.answered, "unreachable": self.unreachable},
            "proxies": self.proxies,
            "unchanged": self.unchanged,
            "groups": self.groups,
            "envoy": self.envoy,
        }


def describe(group: dict[str, Any]) -> str:
    """'2 sidecars of reviews (default)'."""
    count, kind = group["count"], group["kind"]
    return f"{count} {kind}{'s' if count != 1 else ''} of {group['service']} ({group['namespace']})"


async def _ask(
    session: aiohttp.ClientSession, addr: str, body: bytes, proxy: str | None
) -> tuple[int, dict[str, Any]]:
    params = {"proxy": proxy} if proxy is not None else {}
    async with session.post(
        f"http://{addr}/debug/plan",
        data=body,
        params=params,
        headers={"Content-Type": "application/json"},
    ) as resp:
        raw = await read_bounded(resp, MAX_ANSWER_BYTES)
        if raw is None:
            raise ValueError(f"the answer is over {MAX_ANSWER_BYTES} bytes")
        answer = json.loads(raw)
        if not isinstance(answer, dict):
            raise ValueError("the answer is not a JSON object")
        return resp.status, answer


def _merge(into: dict[str, dict[str, Any]], group: dict[str, Any]) -> None:
    found = into.get(group["key"])
    if found is None:
        into[group["key"]] = {**group, "proxies": list(group["proxies"])}
        return
    found["count"] += group["count"]
    found["proxies"] = sorted({*found["proxies"], *group["proxies"]})[:EXAMPLES]
    if not group["envoy"]["accepted"] or not found["envoy"]["checked"]:
        found["envoy"] = group["envoy"]


def _verdict(answered: list[dict[str, Any]]) -> dict[str, Any]:
    """One verdict from every Pilot's: a refusal, else a gap, else accepted."""
    if not answered:
        return {"checked": False, "accepted": True, "error": NO_PILOT}
    verdicts = [a["envoy"] for a in answered]
    refused = next((v for v in verdicts if not v.get("accepted", True)), None)
    if refused is not None:
        return dict(refused)
    if all(v.get("checked") for v in verdicts):
        return {"checked": True, "accepted": True, "error": ""}
    changed = [a for a in answered if a.get("groups")]
    gap = next((a["envoy"] for a in changed if not a["envoy"].get("checked")), None)
    if gap is not None:
        return dict(gap)
    return {"checked": False, "accepted": True, "error": verdicts[0].get("error", "")}


async def plan(
    addrs: str,
    resources: Sequence[Resource],
    proxy: str | None = None,
    limit: float = PLAN_TIMEOUT,
) -> Answers:
    """Ask every Pilot at `addrs` (HOST:PORT, comma-separated) for its plan, at once."""
    body = json.dumps({"resources": [r.to_dict() for r in resources]}).encode()
    targets = [f"{h}:{p}" for h, p in parse_addrs(addrs)]
    limits = aiohttp.ClientTimeout(total=limit, sock_connect=CONNECT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=limits) as session:
        results = await asyncio.gather(
            *(_ask(session, a, body, proxy) for a in targets), return_exceptions=True
        )
    out = Answers()
    merged: dict[str, dict[str, Any]] = {}
    answered: list[dict[str, Any]] = []
    for addr, result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            why = str(result) or type(result).__name__
            out.unreachable.append(f"{addr}: {why}")
            continue
        status, answer = result
        if status == 404 and proxy is not None:
            out.not_found.append(addr)
            continue
        if status != 200:
            out.unreachable.append(f"{addr}: {status} {answer.get('error', '')}".rstrip())
            continue
        out.answered.append(addr)
        answered.append(answer)
        out.proxies += int(answer.get("proxies", 0))
        out.unchanged += int(answer.get("unchanged", 0))
        out.warnings += [w for w in answer.get("warnings", []) if w not in out.warnings]
        for group in answer.get("groups", []):
            _merge(merged, group)
    out.groups = sorted(merged.values(), key=lambda g: (-g["count"], g["kind"], g["service"]))
    out.envoy = _verdict(answered)
    return out


def _note(message: str) -> dict[str, str]:
    return {"document": "envoy-check", "path": "", "message": message}


def check_warnings(answers: Answers) -> list[dict[str, str]]:
    """What a plan leaves unchecked, and the plan's own warnings, as Galley's warnings."""
    out = [_note(w) for w in answers.warnings]
    if not answers.answered:
        why = "; ".join(answers.unreachable)
        return [*out, _note(f"{NO_PILOT} ({why})" if why else NO_PILOT)]
    out += [_note(f"not checked by Envoy on Pilot {u}") for u in answers.unreachable]
    verdict = answers.envoy
    if answers.groups and not verdict.get("checked") and verdict.get("error"):
        out.append(_note(str(verdict["error"])))
    return out


async def envoy_gate(request: Request, resources: Sequence[Resource]) -> list[dict[str, str]]:
    """Before a write: refuse it (422, nothing stored) when Envoy refuses the config any
    proxy would get; otherwise the warnings to add (what Envoy could not check)."""
    if not resources:
        return []
    answers = await plan(request.app.state.settings.pilot_http_addr, resources)
    verdict = answers.envoy
    if verdict.get("checked") and not verdict.get("accepted", True):
        refused = next((g for g in answers.groups if not g["envoy"]["accepted"]), None)
        error = refused["envoy"]["error"] if refused else str(verdict.get("error", ""))
        who = describe(refused) if refused else "a proxy"
        examples = f" (e.g. {', '.join(refused['proxies'])})" if refused else ""
        raise ApiError(
            422,
            "Invalid",
            f"Envoy refuses the config {who} would get: {error}; nothing was stored",
            [{"document": who + examples, "path": "", "message": error}],
        )
    return check_warnings(answers)
