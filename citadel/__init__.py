"""Citadel: the mesh CA. SPIFFE identities for workloads, delivered to Envoy over SDS."""
