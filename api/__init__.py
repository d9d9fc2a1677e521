"""Code shared by Pilot, Galley, Citadel and meshctl.

The services never import each other; what they agree on lives here: the
shape of a mesh workload in the Consul catalog (`api.catalog`) and, as they
are added, the config resource models and the Consul KV layout.
"""
