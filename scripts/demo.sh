#!/usr/bin/env bash
# The README's main command: install what egressgw needs (scripts/bootstrap.sh), then build
# the AWS reference lab in network namespaces, walk its demo and take the lab down again.
# Needs root: the lab creates network namespaces (never touching the host's network).
# Arguments go to `egressgw lab demo aws`: -o json for machines, --keep to leave the lab up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (the lab creates network namespaces)" >&2
  exit 1
fi
scripts/bootstrap.sh
exec .venv/bin/egressgw lab demo aws "$@"
