"""meshctl validate / apply / get / delete: Istio config, offline or through Galley."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
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
        for w in body.get("warnings", []):
            print(f"warning: {w['document']}: {w['path']}: {w['message']}")
    return status


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
        with_status = any("status" in item for item in items)
        header = f"{'NAMESPACE':<16} {'NAME':<32} {'RESOURCE-VERSION':<17}"
        print(header + (" STATUS" if with_status else "").rstrip())
        for item in items:
            meta = item["metadata"]
            namespace = meta.get("namespace", "")
            line = f"{namespace:<16} {meta['name']:<32} {meta.get('resourceVersion', ''):<17}"
            print((line + (" " + _status_summary(item) if with_status else "")).rstrip())
    return 0


def _status_summary(item: dict[str, Any]) -> str:
    """A Gateway API object's conditions in a word: what is not true, else what is."""
    status = item.get("status") or {}
    groups = [p.get("conditions") or [] for p in status.get("parents") or []]
    if "conditions" in status:
        groups.append(status["conditions"])
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
