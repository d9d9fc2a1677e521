"""ECDS: the config of the inbound authn/authz filters that a proxy's listeners name.

Authorization and request authentication travel here rather than inside the
listener, so that Envoy applies a policy change to the very next request on
every connection, pooled keep-alive ones included, with no listener drain.
Every sidecar with an inbound listener, and every gateway, gets all six
filter configs (an external authorizer for CUSTOM policies, request
authentication, then authorization: audit, deny, allow); "no policy" is a
config that enforces nothing. TCP listeners (a sidecar's inbound TCP listener, a
gateway's TCP servers) name two network RBAC filters (deny, allow) whose configs
come the same way (`authz.network_rbac_configs`); a proxy gets the configs its
listeners ask for.
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import extension_pb2

from pilot.model import Proxy
from pilot.networking import authz, ext_authz, jwt, names
from pilot.networking.protos import pack
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource, make_resource

__all__ = ["ExtensionConfigGenerator"]


class ExtensionConfigGenerator:
    type_url = typeurls.EXTENSION_CONFIG

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        return [r for r in _auth_filter_configs(ctx, proxy) if r.name in names]


def _auth_filter_configs(ctx: PushContext, proxy: Proxy) -> tuple[Resource, ...]:
    """A sidecar's, for its inbound listener; a gateway's, for all its listeners (there
    a policy's ports are the listener ports, so `app_port` is None)."""
    if proxy.kind == "sidecar" and proxy.inbound_port is None:
        return ()
    app_port = proxy.app_port if proxy.kind == "sidecar" else None
    labels = frozenset(proxy.labels.items())

    def build() -> tuple[Resource, ...]:
        config, root = ctx.snapshot.config, ctx.snapshot.mesh.root_namespace
        policies = authz.applicable_policies(config, proxy.namespace, proxy.labels, root)
        authns = jwt.applicable_authentications(config, proxy.namespace, proxy.labels, root)
        delegation = ext_authz.delegate(
            policies, ctx.snapshot.mesh.extension_providers, ctx.snapshot.services
        )
        configs: dict[str, Any] = {
            **ext_authz.filter_configs(delegation, app_port),
            names.JWT_AUTHN_FILTER: jwt.jwt_config(
                authns, authz.requires_token(policies), ctx.snapshot.jwks
            ),
            **authz.rbac_configs(policies, app_port, delegation.refs),
            **authz.network_rbac_configs(policies, app_port),
        }
        return tuple(
            make_resource(
                typeurls.EXTENSION_CONFIG,
                name,
                extension_pb2.TypedExtensionConfig(name=name, typed_config=pack(configs[name])),
            )
            for name in (*names.INBOUND_AUTH_FILTERS, *names.NETWORK_AUTH_FILTERS)
        )

    return ctx.memo(("auth-filters", proxy.namespace, labels, app_port), build)
