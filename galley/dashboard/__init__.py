"""Galley's mesh dashboard: HTML pages under /ui/ and their JSON under /v1/dashboard/.

- ``promtext``  the Prometheus text format, parsed
- ``window``    the last minute of each sidecar's request counters; rates, error rate, p99
- ``scrape``    finding the sidecars (Consul meta ``prometheus_port``, gateways by setting)
                and reading their stats concurrently, with short timeouts
- ``graph``     services, versions and edges, laid out in columns (pure)
- ``views``     the other pages' data: proxies (Pilot's syncz), config, security
- ``html``      the pages, rendered on the server; ``static/dashboard.js`` refreshes them
- ``router``    the routes

Imports nothing at package level: the settings import `targets` alone.
"""
