"""ECDS: the config of the inbound authn/authz filters that a proxy's listeners name.

Authorization and request authentication travel here rather than inside the
listener, so that Envoy applies a policy change to the very next request on
every connection, pooled keep-alive ones included, with no listener drain.
"""

from __future__ import annotations

from pilot.model import Proxy
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource

__all__ = ["ExtensionConfigGenerator"]


class ExtensionConfigGenerator:
    type_url = typeurls.EXTENSION_CONFIG

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        return [r for r in ctx.auth_filter_configs(proxy) if r.name in names]
