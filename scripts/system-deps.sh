#!/usr/bin/env bash
# Installs the system packages NomadKV needs: gcc for the compiled request path
# (make compile; `scripts/system-deps.sh build` checks only that), and for tests
# and benchmarks the reference redis-server and redis-benchmark (Debian's
# redis-server/redis-tools, 7.0) and iptables for partition tests. Does nothing
# when they are already there.
set -euo pipefail
need=()
command -v gcc >/dev/null || need+=(gcc)
if [ "${1:-}" != build ]; then
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v redis-benchmark >/dev/null || need+=(redis-tools)
  command -v iptables >/dev/null || need+=(iptables)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || true
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
