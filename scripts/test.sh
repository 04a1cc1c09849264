#!/usr/bin/env bash
# The test command (README.md, .ci/run): sets up a fresh Debian 12 machine,
# builds every guest component and binary, and runs all test tiers.
# Caches live in $MESH_CACHE (default ~/.cache/ambient-mesh), keyed by
# content, so a repeat run rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

t0=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

step "setup (apt, guest toolchains, tools)"
scripts/setup.sh

step "format check"
cargo fmt --all -- --check
cargo fmt --manifest-path filters/Cargo.toml --all -- --check

step "guest components (filters/, cached by content)"
scripts/build-guests.sh

step "native tests of the filter crates (policy logic)"
cargo test --manifest-path filters/Cargo.toml --workspace --quiet

step "build (workspace, tests)"
cargo build --workspace --all-targets --quiet

step "tests (unit, in-process, network namespaces, end-to-end)"
cargo test --workspace --no-fail-fast --quiet -- --test-threads=2

echo
echo "all tests passed in $(( $(date +%s) - t0 ))s"
