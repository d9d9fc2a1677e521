"""Galley's routers: Kubernetes-style resource paths, and multi-document apply/validate."""
