"""Gateway API -> Istio Gateway and VirtualService, as Istio translates them."""

from __future__ import annotations

# Set on every resource made from Gateway API config: the Gateway API object it came
# from. Users cannot set it (api.resources refuses it), so Pilot can tell the two apart:
# a Gateway made from a Gateway API Gateway serves proxies of its own namespace only.
PARENT_ANNOTATION = "internal.istio.io/parents"
