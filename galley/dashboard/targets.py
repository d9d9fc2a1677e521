"""Stats targets: the proxies whose /stats/prometheus the dashboard reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

from api.addrs import split_addr
from api.checks import is_k8s_label

__all__ = ["StatsTargets", "Target", "parse_targets"]


@dataclass(frozen=True, slots=True)
class Target:
    """One proxy's stats: who it is in the graph and where its stats are."""

    service: str
    namespace: str
    version: str  # "" when the instance has no version label
    instance: str
    address: str  # HOST:PORT of /stats/prometheus
    kind: str = "service"  # or "gateway"
    healthy: bool = True

    @property
    def url(self) -> str:
        host, port = split_addr(self.address)
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/stats/prometheus"


def parse_targets(value: str) -> list[Target]:
    """'ingressgateway=127.0.0.1:15090,egress=10.0.0.2:15090' -> gateway targets (the
    namespace after a dot: `ingressgateway.istio-system=...`, default istio-system)."""
    out: list[Target] = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        name, sep, addr = entry.partition("=")
        service, _, namespace = name.strip().partition(".")
        if not sep or not is_k8s_label(service) or not is_k8s_label(namespace or "istio-system"):
            raise ValueError(f"{entry!r} is not NAME[.NAMESPACE]=HOST:PORT")
        split_addr(addr)
        out.append(
            Target(service, namespace or "istio-system", "", service, addr.strip(), "gateway")
        )
    return out


def _targets(value: str) -> str:
    parse_targets(value)
    return value


StatsTargets = Annotated[str, AfterValidator(_targets)]
