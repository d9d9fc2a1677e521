"""Citadel's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["CitadelMetrics"]


class CitadelMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.issued = Counter("citadel_certs_issued", "Workload certificates issued", registry=r)
        self.rotations = Counter(
            "citadel_cert_rotations", "Certificates rotated before expiry", registry=r
        )
        self.pushes = Counter("citadel_sds_pushes", "SDS responses sent", registry=r)
        self.nacks = Counter("citadel_sds_nacks", "SDS responses Envoy rejected", registry=r)
        self.streams = Gauge("citadel_sds_streams", "Open SDS streams", registry=r)
        self.auth_failures = Counter(
            "citadel_auth_failures", "Callers refused", ["reason"], registry=r
        )
        self.tokens = Counter("citadel_tokens_minted", "Workload tokens minted", registry=r)
        self.csr_signed = Counter("citadel_csr_signed", "CSRs signed", registry=r)
        self.credentials = Gauge(
            "citadel_gateway_credentials", "Gateway credentials held for SDS", registry=r
        )
        self.credentials_invalid = Counter(
            "citadel_gateway_credentials_invalid",
            "Stored gateway credentials that did not open or check (left out)",
            registry=r,
        )
        self.credential_watch_errors = Counter(
            "citadel_gateway_credential_watch_errors",
            "Failed reads of the gateway credentials in Consul (retried)",
            registry=r,
        )
        self.grants = Gauge(
            "citadel_reference_grants",
            "ReferenceGrants in force (which gateways may use another namespace's credentials)",
            registry=r,
        )
        self.grants_invalid = Counter(
            "citadel_reference_grants_invalid",
            "Stored ReferenceGrants that did not decode or check (no grant)",
            registry=r,
        )
        self.grant_watch_errors = Counter(
            "citadel_reference_grant_watch_errors",
            "Failed reads of the ReferenceGrants in Consul (none in force until read again)",
            registry=r,
        )
