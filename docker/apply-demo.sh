#!/bin/sh
# One-shot: apply the shop's Gateway, routes and subsets through Galley once it answers,
# so `docker compose up` brings up a shop that works without anything applied by hand.
# The gateway listens on 8080 inside its container (published as 8080 by compose).
set -eu
: "${GALLEY:=galley:15080}" "${GATEWAY_PORT:=8080}"
printf '%s' "$GALLEY_TOKEN" > /tmp/galley-token && chmod 600 /tmp/galley-token
demo="$(python -c 'import meshctl, pathlib; print(pathlib.Path(meshctl.__file__).parent / "demo")')"
sed "s/GATEWAY_PORT/$GATEWAY_PORT/" "$demo/bookinfo.yaml" > /tmp/bookinfo.yaml
until meshctl apply -f /tmp/bookinfo.yaml --galley-addr "$GALLEY" \
        --token-file /tmp/galley-token; do
    sleep 2
done
