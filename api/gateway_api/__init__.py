"""The Kubernetes Gateway API (gateway.networking.k8s.io): its kinds, validated as the
Gateway API's CRDs and webhook do, and their translation into the Istio kinds Pilot
serves (`translate`)."""
