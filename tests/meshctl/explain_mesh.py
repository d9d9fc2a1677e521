"""Config dumps for `meshctl explain` unit tests, made by Pilot's own generators.

A small mesh (catalog instances, Istio config as YAML, connected proxies) is
rendered the way Pilot's `/debug/config_dump` renders it for each proxy, and
served to `explain.Pilots` by a fake fetch; so the tests evaluate exactly the
config Pilot would send, not hand-made JSON.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import yaml
from google.protobuf import json_format

from api.catalog import Instance
from api.mesh_config import ExtensionProvider, load_mesh_config
from api.resources import Resource, check_text
from meshctl.explain import Pilots
from pilot.model import MeshConfig, MeshSnapshot, Proxy
from pilot.xds.cds import ClusterGenerator
from pilot.xds.context import PushContext
from pilot.xds.ecds import ExtensionConfigGenerator
from pilot.xds.eds import EndpointGenerator
from pilot.xds.lds import ListenerGenerator
from pilot.xds.rds import RouteGenerator
from pilot.xds.typeurls import MESSAGES

SDS = ("127.0.0.1:15013", "/var/run/mesh/token", "/var/run/mesh/root-cert.pem")


@dataclass
class Workload:
    service: str
    instance: str
    namespace: str = "default"
    version: str = "v1"
    service_account: str = "default"
    mtls: bool = True  # a mesh identity, and registered as terminating mTLS
    port: int = 0  # the sidecar's inbound port (the instance's mesh address)
    registered: bool = True
    connected: bool = True


@dataclass
class FakeMesh:
    workloads: list[Workload] = field(default_factory=list)
    config: str = ""
    # Istio MeshConfig's extensionProviders, as YAML (the external authorizers).
    providers: str = ""

    def add(self, service: str, instance: str, **kw: Any) -> Workload:
        w = Workload(service, instance, port=16000 + len(self.workloads), **kw)
        self.workloads.append(w)
        return w

    def _snapshot(self) -> MeshSnapshot:
        catalog: dict[str, tuple[Instance, ...]] = {}
        for w in self.workloads:
            if not w.registered:
                continue
            inst = Instance(
                id=w.instance,
                service=w.service,
                namespace=w.namespace,
                address="127.0.0.1",
                port=w.port,
                service_port=9080,
                service_account=w.service_account,
                labels={"version": w.version},
                tls_mode="istio" if w.mtls else "disabled",
            )
            catalog[w.service] = (*catalog.get(w.service, ()), inst)
        resources: list[Resource] = []
        if self.config.strip():
            checked = check_text(self.config, "test.yaml")
            errors = [str(i) for c in checked for i in c.errors]
            assert not errors, errors
            resources = [c.resource for c in checked if c.resource is not None]
        providers: tuple[ExtensionProvider, ...] = ()
        if self.providers:
            raw = {"extensionProviders": yaml.safe_load(self.providers)}
            providers = tuple(load_mesh_config(json.dumps(raw), "mesh").extension_providers or ())
        mesh = MeshConfig(extension_providers=providers)
        return MeshSnapshot.build(1, catalog, resources, mesh)

    def proxy(self, w: Workload) -> Proxy:
        return Proxy(
            id=w.instance,
            service=w.service,
            namespace=w.namespace,
            service_account=w.service_account,
            labels={"version": w.version, "app": w.service},
            outbound_port=15001,
            inbound_port=w.port,
            app_port=20000 + w.port % 1000,
            sds=SDS if w.mtls else None,
        )

    def dumps(self) -> dict[str, dict[str, Any]]:
        ctx = PushContext.build(self._snapshot())
        return {w.instance: _dump(ctx, self.proxy(w)) for w in self.workloads if w.connected}

    def syncz(self) -> dict[str, Any]:
        return {
            "snapshot": 1,
            "proxies": [
                {
                    "proxy": w.instance,
                    "service": w.service,
                    "namespace": w.namespace,
                    "peer": "ipv4:127.0.0.1:40000",
                    "types": {},
                }
                for w in self.workloads
                if w.connected
            ],
        }

    def pilots(self) -> Pilots:
        dumps = self.dumps()
        syncz = self.syncz()

        def fetch(host: str, port: int, path: str) -> Any:
            if path == "/debug/syncz":
                return syncz
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
            proxy = query.get("proxy", [""])[0]
            if proxy not in dumps:
                raise LookupError(proxy)
            return dumps[proxy]

        return Pilots([("127.0.0.1", 15014)], fetch)


def _dump(ctx: PushContext, proxy: Proxy) -> dict[str, Any]:
    """What Pilot's /debug/config_dump shows for the proxy, names followed as Envoy does."""

    def generate(gen: Any, names: frozenset[str]) -> list[dict[str, Any]]:
        message = MESSAGES[gen.type_url]
        return [
            json_format.MessageToDict(message.FromString(r.value_bytes))
            for r in gen.generate(ctx, proxy, names, None)
        ]

    out: dict[str, Any] = {"cds": generate(ClusterGenerator(), frozenset())}
    eds = {c["name"] for c in out["cds"] if c.get("type", "EDS") == "EDS"}
    out["eds"] = generate(EndpointGenerator(), frozenset(eds))
    out["lds"] = generate(ListenerGenerator(), frozenset())
    hcms = [
        f["typedConfig"]
        for lis in out["lds"]
        for chain in lis.get("filterChains", [])
        for f in chain.get("filters", [])
        if f.get("typedConfig", {}).get("@type", "").endswith("HttpConnectionManager")
    ]
    routes = {h["rds"]["routeConfigName"] for h in hcms if "rds" in h}
    out["rds"] = generate(RouteGenerator(), frozenset(routes))
    discovered = {
        f["name"] for h in hcms for f in h.get("httpFilters", []) if "configDiscovery" in f
    }
    out["ecds"] = generate(ExtensionConfigGenerator(), frozenset(discovered))
    return out
