#!/usr/bin/env bash
# The README's main command: install what egressgw needs (scripts/bootstrap.sh), then build
# each reference lab in network namespaces, walk its demo and take the lab down again:
# AWS (Elastic IPs per gateway) and Azure (hub-spoke, route-server BGP, firewall).
# Needs root: the lab creates network namespaces (never touching the host's network).
# Arguments go to each `egressgw lab demo <scenario>`: -o json for machines.
# `scripts/demo.sh aws` or `scripts/demo.sh azure` (or `ha`) walks just that one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (the lab creates network namespaces)" >&2
  exit 1
fi
scripts/bootstrap.sh
scenarios=(aws azure)
case "${1:-}" in
  aws|azure|ha) scenarios=("$1"); shift ;;
esac
for scenario in "${scenarios[@]}"; do
  .venv/bin/egressgw lab demo "$scenario" "$@"
done
