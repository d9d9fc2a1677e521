#!/usr/bin/env bash
# The README's run command: set up (idempotent), then run the local mesh with its demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
exec .venv/bin/meshctl up "$@"
