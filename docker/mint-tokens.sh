#!/bin/sh
# One-shot: mint a workload token for each "namespace/service-account" argument into the
# shared tokens volume, with Citadel's admin credential (tokens are 0600). An argument
# "gateway:namespace/service-account" gets the gateway role: that proxy may fetch its
# namespace's gateway credentials (a Gateway's credentialName) from Citadel over SDS.
set -eu
: "${CITADEL_HTTP:=citadel:15016}"
mkdir -p /var/run/mesh/tokens
printf '%s' "$CITADEL_ADMIN_TOKEN" > /tmp/admin && chmod 600 /tmp/admin
until meshctl root --citadel-http "$CITADEL_HTTP" -o /dev/null 2>/dev/null; do sleep 1; done
for arg in "$@"; do
    identity="${arg#gateway:}"
    ns="${identity%/*}"; sa="${identity#*/}"
    if [ "$identity" != "$arg" ]; then
        meshctl token --citadel-http "$CITADEL_HTTP" --admin-token-file /tmp/admin \
            --namespace "$ns" --service-account "$sa" --gateway -o "/var/run/mesh/tokens/$ns.$sa"
    else
        meshctl token --citadel-http "$CITADEL_HTTP" --admin-token-file /tmp/admin \
            --namespace "$ns" --service-account "$sa" -o "/var/run/mesh/tokens/$ns.$sa"
    fi
done
