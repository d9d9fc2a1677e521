"""Builders: pure functions from the mesh model to typed Envoy protobufs.

Naming follows Istio so that config dumps read alike:
clusters ``outbound|<port>|<subset>|<host>`` and ``inbound|<port>||``.
"""
