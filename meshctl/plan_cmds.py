"""meshctl diff: what applying a file would change in each proxy's Envoy config.

Galley validates the file as apply would and asks every Pilot for its plan (see
galley/routers/plan.py); nothing is stored. Exit status as diff(1): 0 no proxy's config
would change, 1 some would, 2 trouble (invalid input, Galley unreachable, an unknown
proxy, or Envoy refusing the planned config).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from meshctl.config_cmds import ConfigError, _call, _read, _report_error

__all__ = ["EXIT_CHANGES", "EXIT_SAME", "EXIT_TROUBLE", "cmd_diff", "render"]

EXIT_SAME, EXIT_CHANGES, EXIT_TROUBLE = 0, 1, 2
_SIGNS = (("added", "+"), ("removed", "-"), ("changed", "~"))


def _header(group: dict[str, Any]) -> str:
    count, kind = group["count"], group["kind"]
    examples = ", ".join(group["proxies"])
    more = f", ... ({count - len(group['proxies'])} more)" if count > len(group["proxies"]) else ""
    plural = "s" if count != 1 else ""
    return f"{count} {kind}{plural} of {group['service']} ({group['namespace']}): {examples}{more}"


def _envoy_line(verdict: dict[str, Any]) -> str:
    if verdict.get("checked") and verdict.get("accepted"):
        return "Envoy: accepted"
    if not verdict.get("accepted", True):
        return f"Envoy: refused: {verdict.get('error', '')}"
    return f"Envoy: not checked ({verdict.get('error', '')})"


def render(plan: dict[str, Any], show_diff: bool = True) -> list[str]:
    """The plan as text: per group a header, the names per xDS type and the diff; then
    the warnings and Envoy's verdict."""
    lines: list[str] = []
    groups = plan.get("groups", [])
    changed = sum(g["count"] for g in groups)
    lines.append(
        f"{changed} of {plan.get('proxies', 0)} connected proxies would change"
        + (f" ({len(groups)} group{'s' if len(groups) != 1 else ''})" if groups else "")
    )
    for group in groups:
        lines += ["", _header(group)]
        for kind, names in group.get("changes", {}).items():
            for field, sign in _SIGNS:
                lines += [f"  {kind} {sign} {name}" for name in names.get(field, [])]
        if show_diff and group.get("diff"):
            lines += ["", *group["diff"].rstrip("\n").splitlines()]
        verdict = group.get("envoy", {})
        if not verdict.get("accepted", True):
            lines.append(f"  Envoy refuses this group's config: {verdict.get('error', '')}")
    unreachable = plan.get("pilots", {}).get("unreachable", [])
    lines += [f"warning: Pilot {u} did not answer" for u in unreachable]
    if unreachable or plan.get("warnings"):
        lines.append("")
    for w in plan.get("warnings", []):
        where = ": ".join(p for p in (w.get("document"), w.get("path")) if p)
        lines.append(f"warning: {where}: {w.get('message')}" if where else f"warning: {w}")
    lines.append(_envoy_line(plan.get("envoy", {})))
    return lines


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        texts = [_read(path) for path in args.filename]
        query = {"namespace": args.namespace}
        if args.proxy:
            query["proxy"] = args.proxy
        body = "\n---\n".join(text for text, _ in texts)
        code, answer = _call(
            args, "POST", f"/v1/plan?{urllib.parse.urlencode(query)}", body.encode()
        )
    except ConfigError as err:
        print(f"meshctl diff: {err}", file=sys.stderr)
        return EXIT_TROUBLE
    if code != 200:
        _report_error(answer)
        return EXIT_TROUBLE
    if args.output == "json":
        print(json.dumps(answer, indent=2))
    else:
        print("\n".join(render(answer, show_diff=not args.stat)))
    verdict = answer.get("envoy", {})
    if not verdict.get("accepted", True):
        return EXIT_TROUBLE
    return EXIT_CHANGES if answer.get("groups") else EXIT_SAME
