"""telemetry.istio.io kinds: Telemetry."""
