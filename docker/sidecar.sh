#!/bin/sh
# An Envoy sidecar in a compose service that shares its app's network namespace:
# writes the bootstrap with meshctl (Pilot for xDS, Citadel for SDS) and runs Envoy.
# Environment: SERVICE, NAMESPACE, SERVICE_ACCOUNT, VERSION, APP_PORT, and optionally
# GATEWAY (the name of an ingress gateway instead of a sidecar). Envoy's stats are on
# :15090/stats/prometheus on every address (the app's SERVICE_PROMETHEUS_PORT label tells
# the registrator, which puts it in the instance's meta for Galley's dashboard).
set -eu
: "${PILOT:=pilot:15010}" "${CITADEL:=citadel:15013}" "${CITADEL_HTTP:=citadel:15016}"
: "${NAMESPACE:=default}" "${SERVICE_ACCOUNT:=default}" "${VERSION:=v1}"
mkdir -p /var/run/mesh
until meshctl root --citadel-http "$CITADEL_HTTP" -o /var/run/mesh/root-cert.pem 2>/dev/null; do
    sleep 1
done
until [ -s "/var/run/mesh/tokens/$NAMESPACE.$SERVICE_ACCOUNT" ]; do sleep 1; done
id="${HOSTNAME:-$SERVICE}"
if [ -n "${GATEWAY:-}" ]; then
    meshctl bootstrap --pilot-addr "$PILOT" --gateway "$GATEWAY" --service "$GATEWAY" \
        -n "$NAMESPACE" --id "$id" --admin-port 15000 --stats-port 15090 --stats-address 0.0.0.0 \
        --service-account "$SERVICE_ACCOUNT" --address 0.0.0.0 \
        --citadel-addr "$CITADEL" --token-file "/var/run/mesh/tokens/$NAMESPACE.$SERVICE_ACCOUNT" \
        --root-cert /var/run/mesh/root-cert.pem -o /tmp/envoy.yaml
else
    meshctl bootstrap --pilot-addr "$PILOT" --service "$SERVICE" -n "$NAMESPACE" --id "$id" \
        --admin-port 15000 --outbound-port 15001 --inbound-port 15006 --app-port "$APP_PORT" \
        --stats-port 15090 --stats-address 0.0.0.0 \
        --service-account "$SERVICE_ACCOUNT" --label "version=$VERSION" \
        --label "app=$SERVICE" \
        --citadel-addr "$CITADEL" --token-file "/var/run/mesh/tokens/$NAMESPACE.$SERVICE_ACCOUNT" \
        --root-cert /var/run/mesh/root-cert.pem -o /tmp/envoy.yaml
fi
# The drain flags are meshctl.bootstrap.DRAIN_ARGS: a replaced listener drains in 5 s.
exec envoy -c /tmp/envoy.yaml --concurrency 1 --log-level warn \
    --drain-time-s 5 --drain-strategy immediate
