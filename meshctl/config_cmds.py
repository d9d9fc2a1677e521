"""meshctl validate / apply / get / delete: Istio config, offline or through Galley."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import yaml

from api.analyze import analyze
from api.resources import KindInfo, check_text, kinds

__all__ = ["cmd_apply", "cmd_delete", "cmd_get", "cmd_validate", "resolve_kind"]

SHORT_NAMES = {
    "vs": "VirtualService",
    "dr": "DestinationRule",
    "gw": "Gateway",
    "se": "ServiceEntry",
    "pa": "PeerAuthentication",
    "ap": "AuthorizationPolicy",
    "ra": "RequestAuthentication",
    # The Gateway API's, as kubectl knows them.
    "gtw": "Gateway.gateway.networking.k8s.io",
    "gc": "GatewayClass.gateway.networking.k8s.io",
    "refgrant": "ReferenceGrant.gateway.networking.k8s.io",
}


class ConfigError(Exception):
    """Reported as one line by the CLI."""


def resolve_kind(name: str) -> KindInfo:
    """A kind as kubectl takes it: `Kind`, plural or singular, a short name, or any of
    these followed by `.GROUP` (a bare `gateway` is Istio's; the Gateway API's is `gtw`
    or `gateways.gateway.networking.k8s.io`)."""
    lowered = name.lower()
    if lowered in SHORT_NAMES:
        return kinds()[SHORT_NAMES[lowered]]
    word, _, group = lowered.partition(".")
    # Istio's kinds first, so that a bare `gateway` is Istio's, as in an Istio cluster.
    for info in sorted(kinds().values(), key=lambda k: k.id != k.kind):
        names = (info.kind.lower(), info.plural, info.plural.rstrip("s"))
        if word in names and group in ("", info.group):
            return info
    known = ", ".join(sorted(k.id for k in kinds().values()))
    raise ConfigError(f"unknown kind {name!r} (one of {known})")


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "stdin"
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), os.path.basename(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from err


def cmd_validate(args: argparse.Namespace) -> int:
    results = []
    for path in args.filename:
        text, source = _read(path)
        results.extend(check_text(text, source, args.namespace))
    # Later documents replace earlier ones with the same kind/namespace/name, as apply does.
    final = {c.resource.key: c for c in results if c.ok and c.resource is not None}
    analysis = analyze([c.resource for c in final.values() if c.resource is not None], set())
    lines, errors, warnings = [], 0, 0
    for c in results:
        for issue in c.issues:
            tag = "error" if issue in c.errors else "warning"
            errors += tag == "error"
            warnings += tag == "warning"
            lines.append(f"{tag}: {c.where}: {issue}")
        if c.resource is not None and final.get(c.resource.key) is c:
            for issue in analysis.get(c.resource.ref, []):
                warnings += 1
                lines.append(f"warning: {c.where}: {issue}")
    for line in lines:
        print(line, file=sys.stderr if line.startswith("error") else sys.stdout)
    if errors:
        print(
            f"{errors} error(s), {warnings} warning(s) in {len(results)} document(s)",
            file=sys.stderr,
        )
        return 1
    print(f"{len(results)} resource(s) valid" + (f", {warnings} warning(s)" if warnings else ""))
    return 0


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            with open(args.token_file) as f:
                return f.read().strip()
        except OSError as err:
            raise ConfigError(f"cannot read token file: {err}") from err
    return args.token or os.environ.get("MESH_TOKEN")


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/yaml",
) -> tuple[int, dict[str, Any]]:
    host, port = args.galley_addr
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/yaml"
    token = _token(args)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        f"http://{host}:{port}{path}", data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"{}")
        except ValueError:
            return err.code, {"error": {"message": err.reason}}
    except (urllib.error.URLError, OSError) as err:
        raise ConfigError(f"galley at {host}:{port}: {getattr(err, 'reason', err)}") from err


def _report_error(body: dict[str, Any]) -> None:
    error = body.get("error") or {}
    print(f"error: {error.get('message', body)}", file=sys.stderr)
    for d in error.get("details") or []:
        print(f"error: {d.get('document')}: {d.get('path')}: {d.get('message')}", file=sys.stderr)
    for w in body.get("warnings") or []:
        print(f"warning: {w.get('document')}: {w.get('path')}: {w.get('message')}", file=sys.stderr)


def cmd_apply(args: argparse.Namespace) -> int:
    status = 0
    began = time.monotonic()
    applied: dict[str, int] = {}  # ref -> the revision stored
    for path in args.filename:
        text, source = _read(path)
        code, body = _call(
            args, "POST", f"/v1/apply?namespace={args.namespace}", text.encode(), source
        )
        if code != 200:
            _report_error(body)
            status = 1
            continue
        for r in body.get("results", []):
            print(f"{r['resource']} {r['action']}")
            version = str(r.get("resourceVersion") or "")
            applied[r["resource"]] = int(version) if version.isdigit() else 0
        for w in body.get("warnings", []):
            print(f"warning: {w['document']}: {w['path']}: {w['message']}")
    if getattr(args, "wait", False) and status == 0 and applied:
        status = _wait(args, applied, began)
    return status


@dataclass(slots=True)
class _Sync:
    """One applied resource's distribution, as Galley serves it in its status."""

    ref: str
    revision: int
    condition: dict[str, Any] | None = None
    distribution: dict[str, Any] | None = None
    gone: bool = False

    @property
    def reconciled(self) -> bool:
        return self.current and (self.condition or {}).get("status") == "True"

    @property
    def current(self) -> bool:
        """Galley reports the revision applied, or a later one."""
        return int((self.distribution or {}).get("revision") or 0) >= self.revision

    @property
    def settled(self) -> bool:
        """Nothing more to wait for: applied everywhere, or refused with none pending."""
        if self.gone or self.reconciled:
            return True
        d = self.distribution or {}
        return (
            self.current
            and bool(d.get("nacked"))
            and not d.get("pending")
            and not (d.get("pilots") or {}).get("behind")
        )


def _ref_path(ref: str) -> str:
    """The REST path of KIND/NAMESPACE/NAME (KIND/NAME when cluster-scoped)."""
    kind, _, rest = ref.partition("/")
    info = kinds().get(kind)
    if info is None:
        raise ConfigError(f"Galley answered with an unknown kind in {ref!r}")
    if info.cluster_scoped:
        return _path(info, None, rest)
    namespace, _, name = rest.partition("/")
    return _path(info, namespace, name)


def _poll(args: argparse.Namespace, sync: _Sync) -> None:
    code, body = _call(args, "GET", _ref_path(sync.ref))
    if code == 404:
        sync.gone = True
        return
    if code != 200:
        return  # Galley busy or restarting: ask again
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    sync.condition = next((c for c in conditions if c.get("type") == "Reconciled"), None)
    sync.distribution = status.get("distribution")


def _wait(args: argparse.Namespace, applied: dict[str, int], began: float) -> int:
    """Poll Galley until every applied resource is Reconciled (or refused), or time out."""
    syncs = [_Sync(ref, revision) for ref, revision in applied.items()]
    deadline = began + args.timeout
    while True:
        for sync in syncs:
            if not sync.settled:
                _poll(args, sync)
        if all(s.settled for s in syncs) or time.monotonic() >= deadline:
            break
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
    took = time.monotonic() - began
    for sync in syncs:
        print(_sync_line(sync))
    if all(s.reconciled or s.gone for s in syncs):
        print(f"converged in {took:.2f}s")
        return 0
    nacked = sum(1 for s in syncs if s.current and (s.distribution or {}).get("nacked"))
    waiting = sum(1 for s in syncs if not s.settled)
    print(
        f"not converged after {took:.2f}s: {nacked} resource(s) NACKed, {waiting} pending",
        file=sys.stderr,
    )
    return 1


def _sync_line(sync: _Sync) -> str:
    """What became of one resource: who applied it, who refused it (Envoy's error), who not
    yet."""
    if sync.gone:
        return f"{sync.ref}: deleted meanwhile"
    d = sync.distribution or {}
    condition = sync.condition or {}
    if not sync.current or condition.get("status") == "Unknown":
        why = condition.get("message") or "Galley reports no distribution status"
        return f"{sync.ref}: revision {sync.revision} not confirmed: {why}"
    acked = d.get("acked") or []
    lines = [f"{sync.ref}: ACKed by {len(acked)}/{d.get('affected', 0)} proxies"]
    lines[0] += f": {', '.join(acked)}" if acked else ""
    for n in d.get("nacked") or []:
        lines.append(f"  NACK from {n.get('proxy')} ({n.get('type')}): {n.get('error')}")
    if d.get("pending"):
        lines.append(f"  pending: {', '.join(d['pending'])}")
    behind = (d.get("pilots") or {}).get("behind") or []
    if behind:
        lines.append(f"  Pilot {', '.join(behind)} has not pushed revision {sync.revision} yet")
    return "\n".join(lines)


def _synced(item: dict[str, Any]) -> str:
    """The SYNCED column: proxies that applied the resource of those affected, and NACK
    when any refused it (`?` when no Pilot answered, `-` when Galley reports nothing)."""
    status = item.get("status") or {}
    d = status.get("distribution")
    if not d:
        return "-"
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    reconciled = next((c for c in conditions if c.get("type") == "Reconciled"), {})
    if reconciled.get("status") == "Unknown":
        return "?"
    text = f"{len(d.get('acked') or [])}/{d.get('affected', 0)}"
    if d.get("nacked"):
        text += " NACK"
    elif reconciled.get("status") != "True":
        text += " PENDING"
    return text


def _path(info: KindInfo, namespace: str | None, name: str | None = None) -> str:
    version = info.versions[-1]
    if info.cluster_scoped:
        base = f"/apis/{info.group}/{version}/{info.plural}"
        return f"{base}/{name}" if name else base
    if namespace is None:
        return f"/apis/{info.group}/{version}/{info.plural}"
    base = f"/apis/{info.group}/{version}/namespaces/{namespace}/{info.plural}"
    return f"{base}/{name}" if name else base


def cmd_get(args: argparse.Namespace) -> int:
    info = resolve_kind(args.kind)
    namespace = None if args.all_namespaces else args.namespace
    if args.name and namespace is None and not info.cluster_scoped:
        raise ConfigError("a name needs a namespace (-n), not --all-namespaces")
    code, body = _call(args, "GET", _path(info, namespace, args.name))
    if code != 200:
        _report_error(body)
        return 1
    if args.output == "json":
        print(json.dumps(body, indent=2))
    elif args.output == "yaml":
        docs = body.get("items", [body]) if not args.name else [body]
        print(yaml.safe_dump_all(docs, sort_keys=False), end="")
    else:
        items = body.get("items", [body]) if not args.name else [body]
        with_status = any(_status_summary(item) for item in items)
        header = f"{'NAMESPACE':<16} {'NAME':<32} {'RESOURCE-VERSION':<17} {'SYNCED':<12}"
        print(header + (" STATUS" if with_status else "").rstrip())
        for item in items:
            meta = item["metadata"]
            namespace = meta.get("namespace", "")
            line = f"{namespace:<16} {meta['name']:<32} {meta.get('resourceVersion', ''):<17}"
            line += f" {_synced(item):<12}"
            print((line + (" " + _status_summary(item) if with_status else "")).rstrip())
    return 0


def _status_summary(item: dict[str, Any]) -> str:
    """A Gateway API object's conditions in a word: what is not true, else what is."""
    status = item.get("status") or {}
    groups = [p.get("conditions") or [] for p in status.get("parents") or []]
    if "conditions" in status:  # Reconciled is the SYNCED column's, not the object's own
        groups.append([c for c in status["conditions"] if c.get("type") != "Reconciled"])
    wrong = [
        f"{c['type']}={c['reason']}"
        for conditions in groups
        for c in conditions
        if (c.get("status") != "True") != (c.get("type") == "PartiallyInvalid")
        and not (c.get("type") == "Conflicted" and c.get("status") == "False")
    ]
    if wrong:
        return ",".join(dict.fromkeys(wrong))
    return ",".join(dict.fromkeys(c["type"] for conditions in groups for c in conditions))


def cmd_delete(args: argparse.Namespace) -> int:
    info = resolve_kind(args.kind)
    code, body = _call(args, "DELETE", _path(info, args.namespace, args.name))
    if code != 200:
        _report_error(body)
        return 1
    where = args.name if info.cluster_scoped else f"{args.namespace}/{args.name}"
    print(f"{info.id}/{where} deleted")
    return 0
