"""Listener builders (LDS): the sidecar's outbound and inbound HTTP listeners."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import duration_pb2

from pilot.networking import names, telemetry
from pilot.networking.http_route import CORS_FILTER, FAULT_FILTER
from pilot.networking.protos import pack

__all__ = ["AUTH_FILTER_TYPES", "inbound_listener", "outbound_listener"]

_HCM = "envoy.filters.network.http_connection_manager"
_TYPE = "type.googleapis.com/envoy.extensions.filters.http."
# What config each discovered inbound filter accepts over ECDS.
AUTH_FILTER_TYPES = {
    names.EXT_AUTHZ_RBAC_FILTER: _TYPE + "rbac.v3.RBAC",
    names.EXT_AUTHZ_FILTER: _TYPE + "ext_authz.v3.ExtAuthz",
    names.JWT_AUTHN_FILTER: _TYPE + "jwt_authn.v3.JwtAuthentication",
    names.RBAC_AUDIT_FILTER: _TYPE + "rbac.v3.RBAC",
    names.RBAC_DENY_FILTER: _TYPE + "rbac.v3.RBAC",
    names.RBAC_ALLOW_FILTER: _TYPE + "rbac.v3.RBAC",
}


def mesh_filters() -> list[hcm_pb2.HttpFilter]:
    """Fault and CORS run before the router; routes configure them per route."""
    return [
        hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault())),
        hcm_pb2.HttpFilter(name=CORS_FILTER, typed_config=pack(cors_pb2.Cors())),
        _router(),
    ]


def auth_filters() -> list[hcm_pb2.HttpFilter]:
    """An external authorizer (CUSTOM), request authentication, then authorization
    (audit, deny, allow), their config
    discovered over ECDS (`names.INBOUND_AUTH_FILTERS`): on a sidecar's inbound
    listener and on every gateway listener."""
    return [_discovered(n) for n in names.INBOUND_AUTH_FILTERS]


def _router() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(
        name="envoy.filters.http.router", typed_config=pack(router_pb2.Router())
    )


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _discovered(name: str) -> hcm_pb2.HttpFilter:
    """A filter whose config comes over ECDS under its own name.

    Envoy applies a new filter config to the next request, on existing
    connections too, where a changed listener would only reach new ones.
    Until the config arrives the listener warms; without it, requests are
    refused (500), never let through.
    """
    return hcm_pb2.HttpFilter(
        name=name,
        config_discovery=config_source_pb2.ExtensionConfigSource(
            config_source=_ads(), type_urls=[AUTH_FILTER_TYPES[name]]
        ),
    )


def _listener(
    name: str, address: str, port: int, hcm: hcm_pb2.HttpConnectionManager
) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[listener_components_pb2.Filter(name=_HCM, typed_config=pack(hcm))]
            )
        ],
    )


def outbound_listener(
    address: str, port: int, namespace: str, obs: telemetry.Observability | None = None
) -> listener_pb2.Listener:
    """Where the app sends outbound HTTP (by Host, or as its ``http_proxy``)."""
    name = names.outbound_listener(address, port)
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(route_config_name=names.outbound_route(namespace), config_source=_ads()),
        http_filters=mesh_filters(),
    )
    telemetry.apply(hcm, obs, outbound=True)
    return _listener(name, address, port, hcm)


def inbound_listener(
    address: str,
    port: int,
    mode: str = "DISABLE",
    tls: tls_pb2.DownstreamTlsContext | None = None,
    obs: telemetry.Observability | None = None,
) -> listener_pb2.Listener:
    """Where mesh traffic for this workload arrives; forwarded to the app.

    STRICT: mutual TLS only. PERMISSIVE: TLS inspector, mutual TLS or
    plaintext. DISABLE: plaintext. Over mTLS the app gets the caller's SPIFFE
    identity in x-forwarded-client-cert; from plaintext callers that header is
    dropped, never trusted. Request authentication and authorization run
    before the router, their config discovered over ECDS (`names.INBOUND_AUTH_FILTERS`),
    so that a policy change never rebuilds this listener.
    """
    name = names.inbound_listener(address, port)
    route_config = route_pb2.RouteConfiguration(
        name=names.inbound_route(port),
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=names.inbound_vhost(port),
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        name=names.DEFAULT_ROUTE,
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        route=route_components_pb2.RouteAction(
                            cluster=names.inbound_cluster(port),
                            timeout=duration_pb2.Duration(seconds=0),
                        ),
                    )
                ],
            )
        ],
    )
    filters = [*auth_filters(), _router()]

    def chain(secure: bool) -> listener_components_pb2.FilterChain:
        hcm = hcm_pb2.HttpConnectionManager(
            stat_prefix=name,
            route_config=route_config,
            http_filters=filters,
            forward_client_cert_details=(
                hcm_pb2.HttpConnectionManager.SANITIZE_SET
                if secure
                else hcm_pb2.HttpConnectionManager.SANITIZE
            ),
        )
        if secure:
            hcm.set_current_client_cert_details.uri = True
        telemetry.apply(hcm, obs, outbound=False)
        out = listener_components_pb2.FilterChain(
            filters=[listener_components_pb2.Filter(name=_HCM, typed_config=pack(hcm))]
        )
        if secure:
            out.transport_socket.name = "envoy.transport_sockets.tls"
            out.transport_socket.typed_config.CopyFrom(pack(tls))
        return out

    listener = listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
    )
    if tls is None or mode == "DISABLE":
        listener.filter_chains.append(chain(secure=False))
    elif mode == "STRICT":
        listener.filter_chains.append(chain(secure=True))
    else:  # PERMISSIVE
        listener.listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=pack(tls_inspector_pb2.TlsInspector()),
            )
        )
        secure = chain(secure=True)
        secure.filter_chain_match.transport_protocol = "tls"
        plain = chain(secure=False)
        plain.filter_chain_match.transport_protocol = "raw_buffer"
        listener.filter_chains.extend([secure, plain])
    return listener
