#!/usr/bin/env bash
# The main job (README.md): set up a fresh Debian 12 machine, build the
# binaries and WASM filters, start a local mesh running the seed guide's
# `shop` sample (operator, one ztunnel per node, a waypoint, pods in network
# namespaces with real traffic capture, examples/shop applied) and run the
# guide's Verify section as checks with evidence. Exits non-zero when a step
# or a check fails.
#
#   scripts/demo.sh           leave the mesh running afterwards (meshctl down stops it)
#   scripts/demo.sh --down    tear it down at the end
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

DOWN=0
for a in "$@"; do
  case "$a" in
    --down) DOWN=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done
step() { printf '\n==> %s\n' "$*"; }
if [ "$(id -u)" != 0 ]; then
  echo "demo.sh needs root: each pod gets its own network namespace and ztunnel installs iptables capture rules in it." >&2
  echo "Run: sudo scripts/demo.sh" >&2
  exit 1
fi
t0=$(date +%s)

step "setup (apt packages, guest toolchains)"
scripts/setup.sh

step "WASM filter components (first-party and examples, cached by content)"
scripts/build-guests.sh

step "build meshctl, ztunnel, waypoint"
nice -n 5 cargo build --quiet -p meshctl -p ztunnel -p waypoint
BIN="$CARGO_TARGET_DIR/debug"
export PATH="$BIN:$PATH"

step "local mesh + the guide's Verify checks"
meshctl down >/dev/null 2>&1 || true   # what an interrupted earlier demo left
set +e
meshctl up --verify
status=$?
set -e

echo
if [ "$DOWN" = 1 ]; then
  meshctl down
elif [ "$status" = 0 ]; then
  echo "The mesh keeps running. Try (with PATH=$BIN:\$PATH):"
  echo "  meshctl zc workloads --workload-namespace shop"
  echo "  meshctl exec -n shop deploy/web -- curl -s http://orders/api/health"
  echo "  meshctl proxy-config routes deploy/waypoint -n shop"
  echo "  meshctl authz check -n shop --from probe --to orders"
  echo "  examples/README.md walks the whole guide; meshctl down removes everything."
fi
echo "demo finished in $(( $(date +%s) - t0 ))s with status $status"
exit "$status"
