"""The dashboard's pages, rendered on the server from the same data as the JSON.

Plain HTML and SVG; `static/dashboard.js` reloads a page's main part every few
seconds. Every value shown is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from html import escape
from typing import Any

from galley.dashboard.graph import HEADER_H, Graph, Node

__all__ = [
    "PAGES",
    "config_html",
    "graph_html",
    "login",
    "page",
    "proxies_html",
    "security_html",
]

PAGES = (("graph", "Graph"), ("proxies", "Proxies"), ("config", "Config"), ("security", "Security"))
COLOURS = {"green": "#2e9d4f", "amber": "#d99a00", "red": "#d23b3b"}


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def page(name: str, body: str, namespace: str | None = None, refresh_ms: int = 5000) -> str:
    query = f"?namespace={namespace}" if namespace else ""  # a DNS label: nothing to quote
    nav = "".join(
        f'<a href="/ui/{p}{query}"{" class=on" if p == name else ""}>{e(title)}</a>'
        for p, title in PAGES
    )
    title = dict(PAGES)[name]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>meshpy · {e(title)}</title>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        '<link rel=stylesheet href="/ui/static/dashboard.css"></head><body>'
        f"<header><b>meshpy</b><nav>{nav}</nav><span id=updated></span></header>"
        f'<main id=content data-partial="/ui/{name}?partial=1{query.replace("?", "&amp;")}" '
        f'data-refresh-ms="{refresh_ms}">'
        f"{body}</main>"
        '<script src="/ui/static/dashboard.js"></script></body></html>'
    )


def _badge(state: str, title: str = "") -> str:
    cls = state.replace(" ", "_")
    tip = f' title="{e(title)}"' if title else ""
    return f'<span class="badge {e(cls)}"{tip}>{e(state)}</span>'


def _node_svg(n: Node) -> str:
    rows = [v for v in n.versions if v.version]
    parts = [
        f'<g class="node {e(n.kind)}" data-id="{e(n.id)}" data-service="{e(n.service)}">',
        f'<rect class=box x="{n.x:.0f}" y="{n.y:.0f}" width="{n.width:.0f}" '
        f'height="{n.height:.0f}" rx=5></rect>',
        f'<text class=title x="{n.x + 8:.0f}" y="{n.y + 17:.0f}">{e(n.service)}'
        f'<tspan fill="#7a8699" font-weight="400"> {e(n.namespace)}</tspan></text>',
    ]
    for v in rows:
        healthy = f"{v.healthy}/{v.instances}" if v.instances else "-"
        parts.append(
            f'<g class=version data-version="{e(v.version)}">'
            f'<rect class=version x="{n.x + 6:.0f}" y="{v.y - 8:.0f}" '
            f'width="{n.width - 12:.0f}" height=16 rx=3></rect>'
            f'<text x="{n.x + 12:.0f}" y="{v.y + 4:.0f}">{e(v.version)}</text>'
            f'<text x="{n.x + n.width - 12:.0f}" y="{v.y + 4:.0f}" text-anchor=end '
            f'fill="#5a6678">{e(healthy)}</text></g>'
        )
    parts.append("</g>")
    return "".join(parts)


def _anchor(n: Node, version: str, right: bool) -> tuple[float, float]:
    y = next((v.y for v in n.versions if v.version == version and version), n.y + HEADER_H / 2)
    return (n.x + n.width if right else n.x), y


def _label_at(
    placed: list[tuple[float, float]], *curve: tuple[float, float]
) -> tuple[float, float]:
    """Midway along the edge's curve, moved down clear of the labels placed before."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = curve
    x = (x0 + 3 * x1 + 3 * x2 + x3) / 8  # the cubic Bezier at t = 0.5
    y = (y0 + 3 * y1 + 3 * y2 + y3) / 8 - 5
    while any(abs(x - px) < 170 and abs(y - py) < 13 for px, py in placed):
        y += 13
    placed.append((x, y))
    return x, y


def graph_svg(g: Graph) -> str:
    nodes = {n.id: n for n in g.nodes}
    edges = []
    placed: list[tuple[float, float]] = []
    labels: list[str] = []  # drawn again over the nodes, so that none hides one
    for edge in g.edges:
        src, dst = nodes.get(edge.source), nodes.get(edge.destination)
        if src is None or dst is None:
            continue
        x1, y1 = _anchor(src, edge.source_version, True)
        x2, y2 = _anchor(dst, edge.destination_version, False)
        bend = max(60.0, abs(x2 - x1) / 2)
        colour = COLOURS[edge.health]
        width = 1.5 + min(5.0, math.log1p(edge.rps))
        label = f"{edge.rps:.1f}/s · {edge.error_rate:.0%} err"
        if edge.p99_ms is not None:
            label += f" · p99 {edge.p99_ms:.0f}ms"
        if edge.share is not None:
            label += f" · {edge.share:.0%}"
        lx, ly = _label_at(placed, (x1, y1), (x1 + bend, y1), (x2 - bend, y2), (x2, y2))
        share = f"{edge.share:.4f}" if edge.share is not None else ""
        edges.append(
            f'<g class="edge {e(edge.health)}" data-source="{e(edge.source)}" '
            f'data-destination="{e(edge.destination)}" '
            f'data-version="{e(edge.destination_version)}" data-rps="{edge.rps:.3f}" '
            f'data-share="{share}">'
            f'<path d="M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} '
            f'{x2:.0f},{y2:.0f}" stroke="{colour}" stroke-width="{width:.1f}" '
            'marker-end="url(#arrow)"></path>'
            f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor=middle>{e(label)}</text></g>'
        )
        labels.append(
            f'<text class=label x="{lx:.0f}" y="{ly:.0f}" text-anchor=middle>{e(label)}</text>'
        )
    marker = (
        '<defs><marker id=arrow viewBox="0 0 10 10" refX=9 refY=5 markerWidth=9 markerHeight=9 '
        "markerUnits=userSpaceOnUse orient=auto-start-reverse>"
        '<path d="M0,0 L10,5 L0,10 z" fill="#6b778a"></path>'
        "</marker></defs>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{g.width:.0f}" height="{g.height:.0f}" '
        f'viewBox="0 0 {g.width:.0f} {g.height:.0f}">{marker}{"".join(edges)}'
        f"{''.join(_node_svg(n) for n in g.nodes)}"
        f"<g class=labels aria-hidden=true>{''.join(labels)}</g></svg>"
    )


def graph_html(g: Graph, view: Mapping[str, Any]) -> str:
    down = [t for t in view["targets"] if not t["ok"]]
    notes = []
    if view["error"]:
        notes.append(f'<p class="note err">{e(view["error"])}</p>')
    if down:
        listed = ", ".join(f"{t['instance']} ({t['address']}: {t['error']})" for t in down)
        notes.append(f'<p class="note err">stats not readable: {e(listed)}</p>')
    read = sum(1 for t in view["targets"] if t["ok"])
    return (
        "<h1>Service graph</h1>"
        f"<p class=note>{len(g.nodes)} services, {len(g.edges)} edges with traffic in the last "
        f"{view['window_seconds']:.0f} s, from the stats of {read} proxies. Edge: requests/s · "
        "5xx share · p99 latency · share of the caller's requests to that service's versions. "
        f"Green: errors under 1 %; amber: under 5 % (or p99 over 1 s); red: more.</p>"
        f"{''.join(notes)}<div class=graph>{graph_svg(g)}</div>"
    )


def proxies_html(view: Mapping[str, Any]) -> str:
    types = ("cds", "lds", "eds", "rds", "ecds")
    notes = "".join(
        f'<p class="note err">Pilot {e(p["addr"])}: {e(p["error"])}</p>'
        for p in view["pilots"]
        if not p["ok"]
    )
    rows = []
    for p in view["proxies"]:
        cells = "".join(
            f"<td>{_badge(p['types'][t]['state'], p['types'][t]['error'])}</td>" for t in types
        )
        rows.append(
            f'<tr data-proxy="{e(p["proxy"])}"><td>{e(p["proxy"])}</td>'
            f"<td>{e(p['service'])}.{e(p['namespace'])}</td><td>{e(p['pilot'])}</td>"
            f"<td>{p['connected_seconds']:.0f} s</td>{cells}"
            f"<td class=err>{e(p['last_nack'])}</td></tr>"
        )
    head = "".join(f"<th>{t.upper()}</th>" for t in types)
    return (
        f"<h1>Proxies</h1><p class=note>{len(view['proxies'])} proxies connected to "
        f"{sum(1 for p in view['pilots'] if p['ok'])} of {len(view['pilots'])} Pilots.</p>{notes}"
        f"<table><tr><th>Proxy</th><th>Service</th><th>Pilot</th><th>Connected</th>{head}"
        f"<th>Last NACK</th></tr>{''.join(rows)}</table>"
    )


def config_html(view: Mapping[str, Any]) -> str:
    rows = []
    for r in view["resources"]:
        conds = " ".join(
            f'<span class="badge {e(c["status"])}" title="{e(c["message"])}">'
            f"{e(c['type'] if c['status'] == 'True' else c['reason'] or c['type'])}</span>"
            for c in r["conditions"]
        )
        warns = "".join(f"<div>{e(w['path'])}: {e(w['message'])}</div>" for w in r["warnings"])
        history = f'<a href="{e(r["history"])}">history</a>' if r["history"] else ""
        rows.append(
            f'<tr data-ref="{e(r["ref"])}"><td>{e(r["kind"])}</td>'
            f"<td>{e(r['namespace'])}/{e(r['name'])}</td><td>{e(r['resourceVersion'])}</td>"
            f"<td>{conds}</td><td class=err>{warns}</td><td>{history}</td></tr>"
        )
    note = f'<p class="note err">{e(view["error"])}</p>' if view["error"] else ""
    return (
        f"<h1>Config</h1><p class=note>{len(view['resources'])} resources in Galley's store."
        f"</p>{note}<table><tr><th>Kind</th><th>Name</th><th>Version</th><th>Status</th>"
        f"<th>Warnings</th><th></th></tr>{''.join(rows)}</table>"
    )


def _expires(cert: Mapping[str, Any] | None) -> str:
    if not cert:
        return _badge("none", "Citadel reported no certificate for this identity")
    left = cert["expiresInSeconds"]
    text = f"in {left / 3600:.1f} h" if left > 0 else "expired"
    state = "red" if left <= 0 else "amber" if left < 3600 else "green"
    return (
        f'<span class="badge {state}" title="serial {e(cert["serial"])}, not after '
        f'{e(cert["notAfter"])}">{e(text)}</span>'
    )


def security_html(view: Mapping[str, Any]) -> str:
    rows = []
    for w in view["workloads"]:
        mode = w["mtls"]
        ports = ", ".join(f"port {p}: {m}" for p, m in sorted(mode["ports"].items()))
        policies = "".join(
            f"<div>{e(p['kind'])} {e(p['namespace'])}/{e(p['name'])} "
            f"<span class=note>({e(p['level'])})</span></div>"
            for p in w["policies"]
        )
        rows.append(
            f'<tr data-instance="{e(w["instance"])}"><td>{e(w["service"])}.{e(w["namespace"])}'
            f"<div class=note>{e(w['instance'])} {e(w['address'])}</div></td>"
            f"<td>{e(w['identity'])}</td><td>{_expires(w['certificate'])}</td>"
            f"<td>{_badge(mode['mode'])} <span class=note>{e(mode['source'])}"
            f"{' · ' + e(ports) if ports else ''}</span></td><td>{policies}</td></tr>"
        )
    note = f'<p class="note err">{e(view["error"])}</p>' if view["error"] else ""
    return (
        f"<h1>Security</h1><p class=note>Trust domain {e(view['trust_domain'])}; "
        f"{len(view['workloads'])} workloads.</p>{note}"
        "<table><tr><th>Workload</th><th>SPIFFE identity</th><th>Certificate expires</th>"
        f"<th>mTLS in force</th><th>Policies selecting it</th></tr>{''.join(rows)}</table>"
    )


def login(failed: bool) -> str:
    """Where a browser off loopback gives Galley's token once (for a cookie)."""
    note = '<p class="note err">That is not one of Galley\'s tokens.</p>' if failed else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>meshpy · log in</title>"
        '<link rel=stylesheet href="/ui/static/dashboard.css"></head><body>'
        "<header><b>meshpy</b></header><main><h1>Dashboard</h1>"
        "<p class=note>From outside Galley's host, reading needs Galley's token. It is "
        "checked once; the browser keeps a cookie that proves it (not the token itself).</p>"
        f'{note}<form method=post action="/ui/login"><input type=password name=token '
        'autocomplete=off size=48 placeholder="token"> <button>Open</button></form>'
        "</main></body></html>"
    )
