"""meshctl proxy-status / proxy-config: what Pilot sent each proxy, as istioctl shows it."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["StatusError", "cmd_proxy_config", "cmd_proxy_status", "sync_state"]

TYPES = ("cds", "lds", "eds", "rds", "ecds")


class StatusError(Exception):
    """Reported as one line by the CLI."""


def _get(args: argparse.Namespace, path: str) -> Any:
    host, port = args.pilot_http
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error", err.reason)
        except ValueError:
            message = err.reason
        raise StatusError(f"pilot: {message}") from err
    except (urllib.error.URLError, OSError) as err:
        raise StatusError(f"pilot at {host}:{port}: {getattr(err, 'reason', err)}") from err


def sync_state(watch: dict[str, Any] | None) -> str:
    """SYNCED: the last version sent was ACKed. STALE: sent, not (yet) ACKed, or NACKed.
    NOT SENT: the proxy asked for nothing of this type, or got nothing yet."""
    if not watch or not watch.get("version_sent"):
        return "NOT SENT"
    if watch.get("nack"):
        return "STALE (NACK)"
    return "SYNCED" if watch.get("version_acked") == watch.get("version_sent") else "STALE"


STATUS_HEADER = ("NAME", "CLUSTER", *(t.upper() for t in TYPES), "VERSION")


def status_rows(body: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per proxy of a /debug/syncz answer, by name (see STATUS_HEADER)."""
    rows = []
    for p in sorted(body.get("proxies", []), key=lambda p: p["proxy"]):
        types = p.get("types", {})
        states = (sync_state(types.get(t)) for t in TYPES)
        cluster = f"{p['service']}.{p['namespace']}"
        rows.append((p["proxy"], cluster, *states, str(body.get("snapshot"))))
    return rows


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Columns as wide as their widest cell, two spaces apart."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def cmd_proxy_status(args: argparse.Namespace) -> int:
    body = _get(args, "/debug/syncz")
    if args.output == "json":
        print(json.dumps(body, indent=2))
        return 0
    print_table(STATUS_HEADER, status_rows(body))
    return 0


def _rows(kind: str, items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    if kind == "clusters":
        return [
            (
                c["name"],
                c.get("type", "EDS"),
                c.get("lbPolicy", "ROUND_ROBIN"),
                "mTLS" if c.get("transportSocket") or c.get("transportSocketMatches") else "",
            )
            for c in items
        ]
    if kind == "listeners":
        return [
            (
                lis["name"],
                "{}:{}".format(
                    lis["address"]["socketAddress"]["address"],
                    lis["address"]["socketAddress"].get("portValue", 0),
                ),
                str(len(lis.get("filterChains", []))),
            )
            for lis in items
        ]
    if kind == "routes":
        return [
            (
                r["name"],
                vh["name"],
                ",".join(vh.get("domains", [])[:3]),
                str(len(vh.get("routes", []))),
            )
            for r in items
            for vh in r.get("virtualHosts", [])
        ]
    if kind == "ecds":
        return [_filter_row(f) for f in items]
    if kind == "endpoints":
        rows: list[tuple[str, ...]] = []
        for cla in items:
            for group in cla.get("endpoints", []):
                for ep in group.get("lbEndpoints", []):
                    sa = ep["endpoint"]["address"]["socketAddress"]
                    rows.append(
                        (
                            f"{sa['address']}:{sa.get('portValue', 0)}",
                            ep.get("healthStatus", "HEALTHY"),
                            cla["clusterName"],
                        )
                    )
        return rows
    return []


_HEADERS = {
    "clusters": ("NAME", "TYPE", "LB", "TLS"),
    "listeners": ("NAME", "ADDRESS", "FILTER CHAINS"),
    "routes": ("NAME", "VIRTUAL HOST", "DOMAINS", "ROUTES"),
    "endpoints": ("ENDPOINT", "STATUS", "CLUSTER"),
    "ecds": ("FILTER", "TYPE", "POLICIES"),
    "secrets": ("SECRET", "SOURCE"),
}
_TYPE = {
    "clusters": "cds",
    "listeners": "lds",
    "routes": "rds",
    "endpoints": "eds",
    "ecds": "ecds",
}


def _filter_row(item: dict[str, Any]) -> tuple[str, ...]:
    """An inbound authn/authz filter: its name, config type and what it enforces."""
    config = item.get("typedConfig", {})
    kind = config.get("@type", "").rsplit(".", 1)[-1]
    if "providers" in config or kind == "JwtAuthentication":
        enforced = sorted(config.get("providers", {}))
    else:
        rules = config.get("rules")
        enforced = sorted(rules.get("policies", {})) if rules else []
    return (item.get("name", ""), kind, ",".join(enforced) or "(none)")


def _secrets(dump: dict[str, Any]) -> list[tuple[str, ...]]:
    """SDS secrets the proxy's config refers to (their content is Citadel's, never Pilot's)."""
    found: set[tuple[str, ...]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("tlsCertificateSdsSecretConfigs", "validationContextSdsSecretConfig"):
                refs = node.get(key)
                for ref in refs if isinstance(refs, list) else [refs] if refs else []:
                    source = ref.get("sdsConfig", {}).get("apiConfigSource", {})
                    grpc = (source.get("grpcServices") or [{}])[0].get("googleGrpc", {})
                    found.add((ref.get("name", ""), grpc.get("targetUri", "")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dump)
    return sorted(found)


def cmd_proxy_config(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    dump = _get(args, f"/debug/config_dump?proxy={quote(args.proxy)}")
    if args.kind == "secrets":
        rows, items = _secrets(dump), None
    else:
        items = dump.get(_TYPE[args.kind], [])
        rows = _rows(args.kind, items)
    if args.output == "json":
        print(
            json.dumps(
                items
                if items is not None
                else [dict(zip(("name", "source"), r, strict=True)) for r in rows],
                indent=2,
            )
        )
        return 0
    print_table(_HEADERS[args.kind], rows)
    return 0
