"""The proxies, config and security pages' data, gathered from what already exists:
every Pilot's /debug/syncz, Galley's store (with analysis and the proxies' ACKs), the
Consul catalog and Citadel's issued certificates. Anything that cannot be read is
reported in the answer (`error` fields), never raised."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from api.addrs import parse_addrs, split_addr
from api.analyze import analyze
from api.store import ConfigStore
from galley.bounded import read_bounded
from galley.dashboard.catalog import Workload
from galley.dashboard.policy import attached, mtls_mode

__all__ = ["SYNC_TYPES", "certificates", "config_rows", "proxies", "security_rows", "sync_state"]

SYNC_TYPES = ("cds", "lds", "eds", "rds", "ecds")
TIMEOUT_S = 2.0
MAX_BYTES = 32 * 1024 * 1024


def sync_state(watch: Mapping[str, Any] | None) -> str:
    """SYNCED (the last version sent was ACKed), NACKED (Envoy refused the last one and
    runs the one before), STALE (sent, no answer yet), NOT SENT."""
    if not watch or not watch.get("version_sent"):
        return "NOT SENT"
    if watch.get("nack"):
        return "NACKED"
    return "SYNCED" if watch.get("version_acked") == watch.get("version_sent") else "STALE"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


async def _get_json(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[Any, str]:
    try:
        async with session.get(url, **kw) as resp:
            if resp.status != 200:
                return None, f"HTTP {resp.status}"
            raw = await read_bounded(resp, MAX_BYTES)
        if raw is None:
            return None, "answer too large"
        return await asyncio.to_thread(json.loads, raw), ""
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        return None, str(err) or type(err).__name__
    except ValueError as err:
        return None, f"not JSON: {err}"


async def proxies(pilot_http_addr: str) -> dict[str, Any]:
    """Every connected proxy, from every Pilot replica, with its state per xDS type."""
    addrs = [f"{h}:{p}" for h, p in parse_addrs(pilot_http_addr)]
    limits = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=limits) as session:
        answers = await asyncio.gather(
            *(_get_json(session, f"http://{a}/debug/syncz") for a in addrs)
        )
    pilots, rows = [], []
    for addr, (body, error) in zip(addrs, answers, strict=True):
        listed = body.get("proxies") if isinstance(body, dict) else None
        if not isinstance(listed, list):
            pilots.append({"addr": addr, "ok": False, "error": error or "not a syncz answer"})
            continue
        pilots.append({"addr": addr, "ok": True, "error": ""})
        for p in listed:
            if not isinstance(p, dict):
                continue
            raw = p.get("types")
            types: dict[str, Any] = raw if isinstance(raw, dict) else {}
            watches = {t: w if isinstance(w := types.get(t), dict) else None for t in SYNC_TYPES}
            rows.append(
                {
                    "proxy": str(p.get("proxy", "")),
                    "service": str(p.get("service", "")),
                    "namespace": str(p.get("namespace", "")),
                    "pilot": addr,
                    "connected_seconds": _number(p.get("connected_seconds")),
                    "nacks": int(_number(p.get("nacks"))),
                    "last_nack": str(p.get("last_nack") or ""),
                    "types": {
                        t: {
                            "state": sync_state(watches[t]),
                            "error": str((watches[t] or {}).get("nack") or ""),
                        }
                        for t in SYNC_TYPES
                    },
                }
            )
    rows.sort(key=lambda r: (r["namespace"], r["service"], r["proxy"]))
    return {"pilots": pilots, "proxies": rows}


async def config_rows(
    store: ConfigStore,
    services: set[str],
    conditions: Any,
    history: bool,
) -> dict[str, Any]:
    """Every stored resource with its status conditions and analysis warnings.
    `conditions(revisions)` -> ref -> status part (the proxies' ACKs)."""
    stored = await store.list_resources()
    resources = [s.resource for s in stored]
    found = await asyncio.to_thread(analyze, resources, services)
    try:
        status = await conditions({s.resource.ref: s.version for s in stored})
    except Exception as err:  # status is advice: the list stands without it
        status, note = {}, f"proxy status unavailable: {err}"
    else:
        note = ""
    rows = []
    for s in stored:
        r = s.resource
        part = status.get(r.ref) or {}
        path = f"/v1/history/{r.kind_id}/{r.namespace}/{r.name}" if r.namespace else None
        rows.append(
            {
                "kind": r.kind,
                "namespace": r.namespace,
                "name": r.name,
                "ref": r.ref,
                "resourceVersion": str(s.version),
                "conditions": [
                    {k: str(c.get(k, "")) for k in ("type", "status", "reason", "message")}
                    for c in part.get("conditions") or []
                    if isinstance(c, Mapping)
                ],
                "warnings": [{"path": i.path, "message": i.message} for i in found.get(r.ref, [])],
                "history": path if history and path else None,
            }
        )
    return {"resources": rows, "error": note}


async def certificates(addr: str | None, credential: str | None) -> tuple[dict[str, Any], str]:
    """identity -> the newest certificate Citadel issued for it; and an error, if any."""
    if not addr:
        return {}, "no Citadel address configured (--citadel-http-addr)"
    host, port = split_addr(addr)
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    limits = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=limits) as session:
        body, error = await _get_json(
            session, f"http://{host}:{port}/v1/certificates", headers=headers
        )
    listed = body.get("certificates") if isinstance(body, dict) else None
    if not isinstance(listed, list):
        return {}, f"Citadel at {addr}: {error or 'not a certificate list'}"
    newest: dict[str, Any] = {}
    for c in listed:  # oldest first: the last one per identity is the newest
        if isinstance(c, dict) and isinstance(c.get("identity"), str):
            newest[c["identity"]] = c
    return newest, ""


def _expiry(cert: Mapping[str, Any] | None, now: datetime.datetime) -> dict[str, Any] | None:
    if not cert:
        return None
    try:
        after = datetime.datetime.fromisoformat(str(cert.get("notAfter")))
    except ValueError:
        return None
    return {
        "serial": str(cert.get("serial", "")),
        "notAfter": after.isoformat(),
        "expiresInSeconds": int((after - now).total_seconds()),
    }


def security_rows(
    workloads: Sequence[Workload],
    resources: Sequence[Any],
    certs: Mapping[str, Any],
    trust_domain: str,
    root_namespace: str,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    rows = []
    for w in workloads:
        i = w.instance
        identity = f"spiffe://{trust_domain}/ns/{i.namespace}/sa/{i.service_account}"
        policies = attached(resources, i.namespace, i.labels, root_namespace)
        mode = mtls_mode(policies)
        rows.append(
            {
                "service": i.service,
                "namespace": i.namespace,
                "instance": i.id,
                "address": f"{i.address}:{i.port}",
                "identity": identity,
                "meshTls": i.tls_mode == "istio",
                "certificate": _expiry(certs.get(identity), now),
                "mtls": {"mode": mode.mode, "source": mode.source, "ports": dict(mode.ports)},
                "policies": [
                    {
                        "kind": a.resource.kind,
                        "namespace": a.resource.namespace,
                        "name": a.resource.name,
                        "level": a.level,
                    }
                    for a in policies
                ],
            }
        )
    return rows
