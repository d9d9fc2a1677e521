"""Galley: validates Istio config and serves the REST API that stores it in Consul KV."""
