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

# The shared target directory only grows: every rebuilt crate leaves its
# old artifacts and incremental data behind (a long-lived cache reached
# 58 GB and filled the disk). Keep it bounded; what is dropped is rebuilt.
step "cache size (limit ${MESH_CACHE_LIMIT_GB:=40} GB)"
FILTERS_TARGET="$MESH_CACHE/filters-target"
for dir in "$CARGO_TARGET_DIR" "$MESH_CACHE/guest-target" "$FILTERS_TARGET"; do
  [ -d "$dir" ] || continue
  used=$(du -s --block-size=1G "$dir" 2>/dev/null | cut -f1)
  echo "$dir: ${used} GB"
  if (( used > MESH_CACHE_LIMIT_GB )); then
    echo "  over the limit: dropping incremental compilation data"
    rm -rf "$dir"/*/incremental "$dir"/*/*/incremental
    used=$(du -s --block-size=1G "$dir" 2>/dev/null | cut -f1)
    if (( used > MESH_CACHE_LIMIT_GB )); then
      echo "  still ${used} GB: dropping debug artifacts (rebuilt below)"
      rm -rf "$dir/debug"
    fi
  fi
done

step "format check"
cargo fmt --all -- --check
cargo fmt --manifest-path filters/Cargo.toml --all -- --check

step "guest components (filters/, cached by content)"
scripts/build-guests.sh

step "native tests of the filter crates (policy logic)"
# A target directory of its own: the main workspace compiles the same path
# crates (filter-model, filter-authz, filter-routing) with the same rustc,
# so they would share artifact names in one directory while each
# workspace records different source paths, and one workspace's rebuild
# could leave the other linking crates built against another copy
# ("multiple different versions of crate filter_model").
CARGO_TARGET_DIR="$FILTERS_TARGET" cargo test --manifest-path filters/Cargo.toml --workspace --quiet

step "build (workspace, tests)"
cargo build --workspace --all-targets --quiet

step "tests (unit, in-process, network namespaces, end-to-end)"
cargo test --workspace --no-fail-fast --quiet -- --test-threads=2

echo
echo "all tests passed in $(( $(date +%s) - t0 ))s"
