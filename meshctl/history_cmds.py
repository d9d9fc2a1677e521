"""meshctl history / rollback: a resource's kept revisions, and going back to one."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from api.resources import KindInfo
from meshctl.config_cmds import ConfigError, _call, _report_error, resolve_kind

__all__ = ["cmd_history", "cmd_rollback"]


def _where(info: KindInfo, args: argparse.Namespace) -> str:
    """KIND/NAMESPACE/NAME as Galley's history routes take it (no namespace for a
    cluster-scoped kind)."""
    return (
        f"{info.id}/{args.name}"
        if info.cluster_scoped
        else f"{info.id}/{args.namespace}/{args.name}"
    )


def cmd_history(args: argparse.Namespace) -> int:
    info = resolve_kind(args.kind)
    code, body = _call(args, "GET", f"/v1/history/{_where(info, args)}")
    if code != 200:
        _report_error(body)
        return 1
    items: list[dict[str, Any]] = body.get("items") or []
    if args.show is not None:
        found = next((i for i in items if i.get("revision") == args.show), None)
        if found is None:
            kept = ", ".join(str(i.get("revision")) for i in reversed(items)) or "none"
            raise ConfigError(f"{_where(info, args)} has no revision {args.show} (kept: {kept})")
        if found.get("resource") is None:
            print(f"# revision {args.show}: deleted")
        else:
            print(yaml.safe_dump(found["resource"], sort_keys=False), end="")
        return 0
    if args.output == "json":
        print(json.dumps(body, indent=2))
        return 0
    print(f"{'REVISION':<9} {'WHEN':<21} {'BY':<16} {'OPERATION':<10} RESOURCE-VERSION")
    for i in items:
        mark = " (current)" if i.get("current") else ""
        print(
            f"{i['revision']:<9} {i['at']:<21} {i['by'] or '-':<16} {i['operation']:<10} "
            f"{i['resourceVersion']}{mark}"
        )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    info = resolve_kind(args.kind)
    asked: dict[str, Any] = {}
    if args.to is not None:
        asked["to"] = args.to
    # JSON is YAML: the body goes as Galley's other bodies do.
    code, body = _call(
        args, "POST", f"/v1/rollback/{_where(info, args)}", json.dumps(asked).encode()
    )
    if code != 200:
        _report_error(body)
        return 1
    ref, to = body["resource"], body["to"]
    if body["action"] == "unchanged":
        print(f"{ref} unchanged: revision {to} is what is stored")
    elif body["action"] == "deleted":
        print(
            f"{ref} deleted: rolled back to revision {to} (a delete), recorded as revision "
            f"{body['revision']}"
        )
    else:
        print(
            f"{ref} rolled back to revision {to}: now revision {body['revision']}, "
            f"resourceVersion {body['resourceVersion']}"
        )
    for w in body.get("warnings") or []:
        print(f"warning: {w['document']}: {w['path']}: {w['message']}")
    return 0
