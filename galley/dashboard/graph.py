"""The service graph: services (with their versions) as nodes, calls as edges, laid out.

Pure: the catalog, the proxies' stats and the scrape results in, a `Graph` out. An
edge runs from a source service (the proxy whose outbound stats counted the calls) to
a destination service, and to one of its versions when the call was routed to a
subset (`outbound|PORT|SUBSET|HOST`): so a canary split shows as one edge per version,
each with its share of the source's calls to that service.

Layout, readable at 50 services: columns by call depth (the longest path from a node
nobody calls, e.g. the ingress gateway), ordered within a column by where their
callers sit; services without traffic wrap into columns of their own at the right.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from galley.dashboard.catalog import Workload
from galley.dashboard.targets import Target
from galley.dashboard.window import EdgeStats

__all__ = ["Edge", "Graph", "Node", "build", "health", "narrowed"]

NODE_W, HEADER_H, ROW_H, GAP_Y, COL_W, MARGIN = 190, 26, 20, 18, 430, 20
ISOLATED_PER_COLUMN = 10
MESH_SUFFIX = ".svc.cluster.local"


@dataclass(slots=True)
class Version:
    version: str
    instances: int = 0
    healthy: int = 0
    y: float = 0.0  # the row's centre


@dataclass(slots=True)
class Node:
    id: str
    service: str
    namespace: str
    kind: str  # service, gateway or external
    versions: list[Version] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0
    width: float = NODE_W
    height: float = HEADER_H
    column: int = 0

    def version(self, name: str) -> Version:
        for v in self.versions:
            if v.version == name:
                return v
        v = Version(name)
        self.versions.append(v)
        return v


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    source_version: str
    destination: str
    destination_version: str  # "" when not routed to a subset
    rps: float
    error_rate: float
    p99_ms: float | None
    share: float | None  # of the source's calls to this service's versions
    health: str  # green, amber, red


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float


def health(error_rate: float, p99: float | None) -> str:
    if error_rate >= 0.05:
        return "red"
    if error_rate >= 0.01 or (p99 is not None and p99 > 1000):
        return "amber"
    return "green"


def node_id(service: str, namespace: str) -> str:
    return f"{service}.{namespace}"


def _destination(host: str) -> tuple[str, str, str]:
    """(node id, service, namespace) of a destination host; a host outside the mesh's
    names is a node of its own (namespace "")."""
    if host.endswith(MESH_SUFFIX):
        service, _, namespace = host.removesuffix(MESH_SUFFIX).partition(".")
        if service and namespace:
            return node_id(service, namespace), service, namespace
    return host, host, ""


def _nodes(workloads: Sequence[Workload], static: Sequence[Target]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for t in static:
        nodes.setdefault(
            node_id(t.service, t.namespace),
            Node(node_id(t.service, t.namespace), t.service, t.namespace, t.kind),
        )
    for w in workloads:
        i = w.instance
        node = nodes.setdefault(
            node_id(i.service, i.namespace),
            Node(node_id(i.service, i.namespace), i.service, i.namespace, "service"),
        )
        v = node.version(w.version)
        v.instances += 1
        v.healthy += int(w.healthy)
    return nodes


def _edges(
    targets: Sequence[Target],
    stats: Mapping[str, Mapping[tuple[str, str], EdgeStats]],
    nodes: dict[str, Node],
) -> list[Edge]:
    # (source, source version, destination, destination version) -> [requests, rps, errors, p99]
    sums: dict[tuple[str, str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, -1.0])
    for t in targets:
        source = node_id(t.service, t.namespace)
        for (host, version), s in stats.get(t.instance, {}).items():
            dest, service, namespace = _destination(host)
            node = nodes.setdefault(
                dest, Node(dest, service, namespace, "external" if not namespace else "service")
            )
            if version:
                node.version(version)
            acc = sums[(source, t.version, dest, version)]
            acc[0] += s.requests
            acc[1] += s.rps
            acc[2] += s.requests * s.error_rate
            acc[3] = max(acc[3], s.p99_ms if s.p99_ms is not None else -1.0)
    split: dict[tuple[str, str, str], float] = defaultdict(float)
    for (src, sv, dest, dv), acc in sums.items():
        if dv:
            split[(src, sv, dest)] += acc[1]
    edges = []
    for (src, sv, dest, dv), (requests, rps, errors, p99) in sorted(sums.items()):
        rate = errors / requests if requests else 0.0
        total = split.get((src, sv, dest), 0.0)
        share = rps / total if dv and total > 0 else None
        p99_ms = p99 if p99 >= 0 else None
        edges.append(Edge(src, sv, dest, dv, rps, rate, p99_ms, share, health(rate, p99_ms)))
    return edges


def _layout(nodes: dict[str, Node], edges: Sequence[Edge]) -> tuple[float, float]:
    succ: dict[str, set[str]] = defaultdict(set)
    pred: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        if e.source != e.destination:
            succ[e.source].add(e.destination)
            pred[e.destination].add(e.source)
    linked = sorted(set(succ) | set(pred))
    depth = {n: 0 for n in linked}
    for _ in range(len(linked)):  # longest path, bounded: a cycle cannot loop forever
        changed = False
        for n in linked:
            for m in succ[n]:
                if depth[m] < depth[n] + 1 <= len(linked):
                    depth[m], changed = depth[n] + 1, True
        if not changed:
            break
    columns: dict[int, list[str]] = defaultdict(list)
    for n in linked:
        columns[depth[n]].append(n)
    isolated = sorted(n for n in nodes if n not in depth)
    first_free = max(columns) + 1 if columns else 0
    for i, n in enumerate(isolated):
        columns[first_free + i // ISOLATED_PER_COLUMN].append(n)
    row: dict[str, float] = {}
    height = 0.0
    for col in sorted(columns):
        members = columns[col]

        def order(n: str) -> tuple[float, str]:
            placed = [row[p] for p in pred.get(n, ()) if p in row]
            return (sum(placed) / len(placed) if placed else 0.0, n)

        members.sort(key=order)
        y = float(MARGIN)
        for index, n in enumerate(members):
            node = nodes[n]
            node.versions.sort(key=lambda v: v.version)
            rows = [v for v in node.versions if v.version]
            node.column = col
            node.x = MARGIN + col * COL_W
            node.y = y
            node.height = HEADER_H + ROW_H * len(rows) + (6 if rows else 0)
            for k, v in enumerate(rows):
                v.y = y + HEADER_H + ROW_H * k + ROW_H / 2
            row[n] = index
            y += node.height + GAP_Y
        height = max(height, y)
    width = MARGIN * 2 + (max(columns) * COL_W + NODE_W if columns else NODE_W)
    return width, height + MARGIN


def build(
    workloads: Sequence[Workload],
    static: Sequence[Target],
    targets: Sequence[Target],
    stats: Mapping[str, Mapping[tuple[str, str], EdgeStats]],
) -> Graph:
    nodes = _nodes(workloads, static)
    edges = _edges(targets, stats, nodes)
    width, height = _layout(nodes, edges)
    ordered = sorted(nodes.values(), key=lambda n: (n.column, n.y))
    return Graph(ordered, edges, width, height)


def narrowed(g: Graph, namespace: str) -> Graph:
    """The services of one namespace, the calls from or to them and their other ends
    (laid out again)."""
    ns_of = {n.id: n.namespace for n in g.nodes}
    edges = [e for e in g.edges if namespace in (ns_of.get(e.source), ns_of.get(e.destination))]
    keep = {n.id for n in g.nodes if n.namespace == namespace}
    keep |= {e.source for e in edges} | {e.destination for e in edges}
    nodes = {n.id: n for n in g.nodes if n.id in keep}
    width, height = _layout(nodes, edges)
    return Graph(sorted(nodes.values(), key=lambda n: (n.column, n.y)), edges, width, height)
