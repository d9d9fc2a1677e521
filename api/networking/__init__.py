"""networking.istio.io kinds: VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar."""
