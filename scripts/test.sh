#!/usr/bin/env bash
# The README's test command: set up (idempotent), lint, type-check, run the suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not e2e"` for the quick subset.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/pytest --durations=25 "$@"
