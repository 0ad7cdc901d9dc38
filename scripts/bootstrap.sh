#!/usr/bin/env bash
# Installs everything egressgw needs on a fresh Debian machine: the system packages the
# lab and the tests start (etcd, BIRD, GoBGP, FRR, nftables, iperf3, ...), and a virtual
# environment in .venv with the package and its development tools. Idempotent and quiet.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(nftables iproute2 etcd-server bird2 gobgpd frr iperf3 conntrack tcpdump curl iputils-ping ethtool procps)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged daemons must not run on the host: the lab starts its own inside namespaces.
for svc in etcd bird frr gobgpd; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
pkill -x etcd >/dev/null 2>&1 || true

if [ ! -x .venv/bin/python ] || [ ! -x .venv/bin/pip ]; then
  rm -rf .venv  # a half-made venv (an interrupted first run) is made again
  python3 -m venv .venv
fi
stamp=.venv/.egressgw-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
