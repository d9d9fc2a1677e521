#!/usr/bin/env bash
# Build the real Consul agent from its Go module and cache it outside the repo.
#
# Consul's go.mod replaces its sibling modules (api, sdk, ...) with local
# folders, and Go ignores a dependency's replace directives, so we build from
# a tiny wrapper module that requires consul at a release tag and pins the
# siblings to the versions the tag itself requires.
#
# Prints the path of the binary on stdout. Second runs only check the cache.
set -euo pipefail

# v1.16.3 is the newest Consul under the MPL-2.0; 1.17.0 and later (and the
# 1.16 patches after 1.16.3) are under the Business Source License, so this
# script refuses to build them.
CONSUL_VERSION="${CONSUL_VERSION:-v1.16.3}"
case "$CONSUL_VERSION" in
    v1.1[0-5].*|v1.16.[0-3]) ;;
    *) echo "build-consul: $CONSUL_VERSION is not an MPL-2.0 release of Consul (newest: v1.16.3)" >&2; exit 2 ;;
esac
CACHE_ROOT="${MESH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshpy}"
OUT_DIR="$CACHE_ROOT/consul-$CONSUL_VERSION"
BIN="$OUT_DIR/consul"

if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi

command -v go >/dev/null || { echo "build-consul: go is not installed" >&2; exit 1; }

# The Go toolchain's own proxy setting is used as it is. Some versions the
# proxy serves are absent from the checksum database (consul's sibling modules,
# hcp-sdk-go v0.55.0), so that lookup is skipped for those modules only.
export GONOSUMDB="github.com/hashicorp/consul,github.com/hashicorp/hcp-sdk-go"
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS=-mod=mod

work="$OUT_DIR/wrapper"
mkdir -p "$work"
cd "$work"

# The siblings, pinned to what consul's go.mod at the tag requires.
cat > go.mod <<MOD
module meshpy.local/consulbuild

go 1.25

require github.com/hashicorp/consul $CONSUL_VERSION

exclude (
	github.com/hashicorp/go-msgpack v1.1.5
	github.com/hashicorp/go-msgpack v1.1.6
)
MOD
cat > tools.go <<'GO'
//go:build tools

package consulbuild

import _ "github.com/hashicorp/consul"
GO

echo "build-consul: resolving consul $CONSUL_VERSION (first run downloads a few hundred modules)" >&2
go mod download -x github.com/hashicorp/consul@"$CONSUL_VERSION" 2>/dev/null || true
upstream_mod="$(go env GOMODCACHE)/cache/download/github.com/hashicorp/consul/@v/$CONSUL_VERSION.mod"
for sib in api envoyextensions proto-public sdk troubleshoot; do
    ver=$(awk -v m="github.com/hashicorp/consul/$sib" '$1==m && $2 ~ /^v/ {print $2; exit}' "$upstream_mod")
    [[ -n "$ver" ]] || { echo "build-consul: no version for $sib in consul's go.mod" >&2; exit 1; }
    go mod edit -require="github.com/hashicorp/consul/$sib@$ver"
done
go mod tidy >&2
echo "build-consul: compiling (several minutes on 2 cores the first time)" >&2
go build -trimpath -ldflags='-s -w' -o "$BIN.tmp" github.com/hashicorp/consul >&2
mv "$BIN.tmp" "$BIN"
"$BIN" version >&2
echo "$BIN"
