# Sourced by the scripts: where caches live and which tool versions are pinned.
# Everything expensive lives outside the clone, keyed by content, so a repeat
# CI run rebuilds only what changed and a fresh machine still builds it all.
export MESH_CACHE="${MESH_CACHE:-$HOME/.cache/ambient-mesh}"
export MESH_TOOLS="$MESH_CACHE/tools"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MESH_CACHE/target}"
export MESH_GUEST_CACHE="${MESH_GUEST_CACHE:-$MESH_CACHE/guests}"
export WIT_BINDGEN_VERSION=0.60.0
export WASI_ADAPTER_VERSION=48.0.8
export PATH="$MESH_TOOLS/bin:$MESH_TOOLS/venv/bin:$MESH_TOOLS/node/node_modules/.bin:$PATH"
