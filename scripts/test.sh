#!/usr/bin/env bash
# The whole test suite: lint, types, layer contracts, then unit, privileged and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check src tests bench
mypy src
lint-imports
pytest "$@"
