#!/usr/bin/env bash
# Benchmarks the waypoint against nginx, same client, same upstream, same run:
#   (a) waypoint, empty filter chain (default route to the addressed service)
#   (b) waypoint, full first-party chain jwt -> authz -> routing -> fault -> retry
#       (RequestAuthentication with a real EC key, an ALLOW policy, a
#       VirtualService with a header match and a 90/10 split over two subsets,
#       no fault, Istio's default retry policy). Requests carry no token
#       unless -J: the JWT filter looks for one and lets the request through,
#       as RequestAuthentication does.
#   (c) nginx as a routing reverse proxy doing the same routing (header map,
#       90/10 split_clients, method allow-list), keepalive to the upstream
#   (d) the floor of the waypoint's stack: host/examples/bare_proxy.rs, a
#       reverse proxy on the same crates (tokio, hyper, hyper-util's pooled
#       client) and thread model that only forwards (no chain, no routing,
#       no telemetry)
# The upstream is nginx returning a fixed body. Client: wrk (requests/s and
# p50/p99 latency). Then the waypoint with the full chain at a fixed
# ~1,000 requests/s of 1 KiB POST bodies (wrk pacing itself with a Lua
# delay): CPU (utime+stime from /proc) and RSS.
#
# Usage: scripts/bench-waypoint.sh [-d SECONDS] [-r ROUNDS] [-c CONNECTIONS] [-t THREADS] [-w WORKERS] [-s] [-F] [-J]
#   -r  rounds of (a), (b), (c), interleaved (default 3); the medians and
#       their ratios are printed after the rounds (one round swings by
#       tens of percent on a shared 2-vCPU VM)
#   -w  waypoint worker threads = nginx proxy worker processes (default 2)
#   -s  set everything up, print the ports and pids, and wait (for profiling)
#   -F  only the fixed-rate part (CPU and RSS at ~1,000 requests/s)
#   -J  every request (to every target) carries a valid ES256 token, which
#       (b) verifies: one signature check per request
#   WAYPOINT_BIN=path  benchmark this waypoint binary instead of building one
#   BARE_BIN=path      the same for (d)
# Needs: release build of the waypoint (built here), guests (built here),
# nginx-light, wrk, openssl, python3 (scripts/setup.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/env.sh"
DURATION=10 ROUNDS=3 CONNS=32 THREADS=2 WORKERS=2 SERVE=0 FIXED_ONLY=0 TOKEN=0
while getopts "d:r:c:t:w:sFJ" o; do
  case $o in
    d) DURATION=$OPTARG ;; r) ROUNDS=$OPTARG ;; c) CONNS=$OPTARG ;; t) THREADS=$OPTARG ;; w) WORKERS=$OPTARG ;; s) SERVE=1 ;;
    F) FIXED_ONLY=1 ;; J) TOKEN=1 ;; *) exit 2 ;;
  esac
done
SVC=echo.bench.svc.cluster.local
say() { printf '[bench] %s\n' "$*" >&2; }

if [ -n "${WAYPOINT_BIN:-}" ]; then
  WAYPOINT="$WAYPOINT_BIN"
else
  say "building the waypoint (release)"
  (cd "$ROOT" && nice -n 10 cargo build --release -q -p waypoint --bin waypoint)
  WAYPOINT="$CARGO_TARGET_DIR/release/waypoint"
fi
if [ -n "${BARE_BIN:-}" ]; then
  BARE="$BARE_BIN"
else
  say "building (d), the bare hyper proxy (release)"
  (cd "$ROOT" && nice -n 10 cargo build --release -q -p waypoint --example bare_proxy)
  BARE="$CARGO_TARGET_DIR/release/examples/bare_proxy"
fi
OUT="$MESH_GUEST_CACHE/out"
missing=()
for g in jwt authz routing fault retry; do [ -f "$OUT/$g.wasm" ] || missing+=("$g"); done
if ((${#missing[@]})); then
  say "building guests: ${missing[*]}"
  "$ROOT/scripts/build-guests.sh" "${missing[@]}" >&2
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port) PA=$(free_port) PB=$(free_port) PN=$(free_port) PD=$(free_port)

# --- upstream: nginx returning a fixed body on 127.0.0.1 and 127.0.0.2 -----
mkdir -p "$WORK/up" "$WORK/px"
cat >"$WORK/up/nginx.conf" <<EOF
daemon off; worker_processes 1; pid $WORK/up/nginx.pid; error_log stderr error;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path $WORK/up; proxy_temp_path $WORK/up; fastcgi_temp_path $WORK/up;
  uwsgi_temp_path $WORK/up; scgi_temp_path $WORK/up;
  server { listen 127.0.0.1:$UP; listen 127.0.0.2:$UP;
           location / { return 200 "hello from the upstream\n"; } }
}
EOF
nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)

# --- (c) nginx routing reverse proxy ---------------------------------------
cat >"$WORK/px/nginx.conf" <<EOF
daemon off; worker_processes $WORKERS; pid $WORK/px/nginx.pid; error_log stderr error;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path $WORK/px; proxy_temp_path $WORK/px; fastcgi_temp_path $WORK/px;
  uwsgi_temp_path $WORK/px; scgi_temp_path $WORK/px;
  upstream v1 { server 127.0.0.1:$UP; keepalive 64; }
  upstream v2 { server 127.0.0.2:$UP; keepalive 64; }
  split_clients "\${request_id}" \$split { 10% v2; * v1; }
  map \$http_x_canary \$pool { default \$split; "true" v2; }
  server {
    listen 127.0.0.1:$PN;
    location / {
      limit_except GET POST { deny all; }
      proxy_pass http://\$pool; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Host \$host;
    }
  }
}
EOF
nginx -c "$WORK/px/nginx.conf" -p "$WORK/px" & PIDS+=($!)

# --- waypoint configs --------------------------------------------------------
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/jwt.key" 2>/dev/null
JWKS=$(openssl ec -in "$WORK/jwt.key" -pubout -outform DER 2>/dev/null | python3 -c '
import sys, base64, json
der = sys.stdin.buffer.read(); pt = der[-64:]
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256", "x": b(pt[:32]), "y": b(pt[32:])}]}))')

# A token the JWT filter accepts (ES256, signed by openssl with the key).
AUTH=()
if ((TOKEN)); then
  JWT=$(python3 - "$WORK/jwt.key" <<'EOF'
import base64, json, subprocess, sys, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
head = b(json.dumps({"alg": "ES256", "kid": "bench", "typ": "JWT"}).encode())
body = b(json.dumps({"iss": "https://issuer.bench", "sub": "bench", "exp": int(time.time()) + 86400}).encode())
der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", sys.argv[1]], input=f"{head}.{body}".encode(),
                     capture_output=True, check=True).stdout
# DER SEQUENCE { INTEGER r, INTEGER s } -> JOSE r || s (32 bytes each).
def integer(buf, i):
    assert buf[i] == 2
    n = buf[i + 1]
    return int.from_bytes(buf[i + 2:i + 2 + n], "big"), i + 2 + n
i = 2 if der[1] < 0x80 else 3
r, i = integer(der, i)
s, _ = integer(der, i)
print(f"{head}.{body}.{b(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")
EOF
)
  AUTH=(-H "Authorization: Bearer $JWT")
fi

write_config() { # file filters-json
  python3 - "$1" "$2" "$UP" "$SVC" <<'EOF'
import json, sys
path, filters, port, svc = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def ep(name, ip, version):
    return {"workloadUid": f"Kubernetes//Pod/bench/{name}", "name": name, "namespace": "bench",
            "workloadName": f"echo-{version}", "address": ip, "ports": {"80": port},
            "labels": {"app": "echo", "version": version}, "canonicalName": "echo", "canonicalRevision": version}
cfg = {"name": "waypoint", "namespace": "bench", "identity": "spiffe://cluster.local/ns/bench/sa/waypoint",
       "services": [{"hostname": svc, "name": "echo", "namespace": "bench", "vips": ["10.96.0.10"],
                     "ports": [{"port": 80, "name": "http"}],
                     "endpoints": [ep("echo-v1", "127.0.0.1", "v1"), ep("echo-v2", "127.0.0.2", "v2")],
                     "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]}],
       "filters": filters,
       "telemetry": {"accessLog": {"enabled": False}, "tracing": {"samplingPercentage": 1.0}}}
json.dump(cfg, open(path, "w"), indent=1)
EOF
}
module() { printf '{"sha256": "", "url": "%s/%s.wasm"}' "$OUT" "$1"; }
FULL=$(cat <<EOF
[
 {"name": "jwt", "module": $(module jwt), "capabilities": ["clock", "crypto", "authn"],
  "config": {"requestAuthentications": [{"namespace": "bench", "name": "jwt", "targetServices": ["$SVC"],
             "jwtRules": [{"issuer": "https://issuer.bench", "jwks": $(printf '%s' "$JWKS" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')}]}]}},
 {"name": "authz", "module": $(module authz), "capabilities": [],
  "config": {"trustDomain": "cluster.local", "policies": [{"namespace": "bench", "name": "allow-get-post",
             "targetServices": ["$SVC"], "action": "ALLOW",
             "rules": [{"to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/*"]}}]}]}]}},
 {"name": "routing", "module": $(module routing), "capabilities": ["random"],
  "config": {"waypointNamespace": "bench", "services": [{"host": "$SVC", "virtualServices": [{"namespace": "bench", "name": "echo", "http": [
     {"match": [{"headers": {"x-canary": {"exact": "true"}}}], "route": [{"destination": {"host": "$SVC", "subset": "v2"}}]},
     {"route": [{"destination": {"host": "$SVC", "subset": "v1"}, "weight": 90}, {"destination": {"host": "$SVC", "subset": "v2"}, "weight": 10}]}]}]}]}},
 {"name": "fault", "module": $(module fault), "capabilities": ["random"], "config": {"routes": {}}},
 {"name": "retry", "module": $(module retry), "capabilities": ["random"], "config": {"routes": {}}}
]
EOF
)
write_config "$WORK/a.json" '[]'
write_config "$WORK/b.json" "$FULL"
start_waypoint() { # port config admin-port; sets LAST_PID
  "$WAYPOINT" --config "$2" --hbone-addr off --http-addr "127.0.0.1:$1" --admin-addr "127.0.0.1:$3" \
    --metrics-addr off --ready-addr off --access-log /dev/null --worker-threads "$WORKERS" --log-level warn &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
AA=$(free_port) AB=$(free_port)
start_waypoint "$PA" "$WORK/a.json" "$AA"; WA=$LAST_PID
start_waypoint "$PB" "$WORK/b.json" "$AB"; WB=$LAST_PID
"$BARE" "127.0.0.1:$PD" "127.0.0.1:$UP" "$WORKERS" & PIDS+=($!)
for port in "$AA" "$AB"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
done
chain=$(curl -s "http://127.0.0.1:$AB/filters" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(",".join(f["name"] for c in d["chains"] for f in c["filters"]))')
say "full chain loaded: $chain"
[ "$chain" = "jwt,authz,routing,fault,retry" ] || { curl -s "http://127.0.0.1:$AB/config_dump" >&2; echo "full chain not loaded" >&2; exit 1; }
for p in "$PA" "$PB" "$PN" "$PD"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $SVC" "${AUTH[@]}" "http://127.0.0.1:$p/")
  [ "$code" = 200 ] || { echo "target on port $p answered $code" >&2; exit 1; }
done
if ((TOKEN)); then # the token is really checked: a forged one is refused
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $SVC" -H "Authorization: Bearer ${JWT%.*}.$(printf 'A%.0s' {1..86})" "http://127.0.0.1:$PB/")
  [ "$code" = 401 ] || { echo "(b) answered $code to a forged token" >&2; exit 1; }
  say "requests carry a valid ES256 token; (b) verifies it (a forged one gets 401)"
fi

if ((SERVE)); then
  echo "upstream 127.0.0.1:$UP  (a) 127.0.0.1:$PA pid $WA admin $AA  (b) 127.0.0.1:$PB pid $WB admin $AB  (c) 127.0.0.1:$PN  (d) 127.0.0.1:$PD"
  echo "Host: $SVC; Ctrl-C to stop"
  wait
fi

# --- throughput and latency --------------------------------------------------
if ((FIXED_ONLY == 0)); then
RESULTS="$WORK/results"
bench() { # key name port
  wrk -t"$THREADS" -c"$CONNS" -d2s -H "Host: $SVC" "${AUTH[@]}" "http://127.0.0.1:$3/" >/dev/null 2>&1  # warm-up
  local out; out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $SVC" "${AUTH[@]}" "http://127.0.0.1:$3/")
  local rps p50 p99 errs
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  printf '%-34s %12s %10s %10s  %s\n' "$2" "$rps" "$p50" "$p99" "$errs"
  echo "$1 $rps" >>"$RESULTS"
}
echo
echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, HTTP/1.1 keep-alive, GET / (24-byte body); $(nproc) shared vCPUs;"
echo "waypoint --worker-threads $WORKERS, nginx worker_processes $WORKERS; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  printf '%-34s %12s %10s %10s\n' "round $round" requests/s p50 p99
  bench a "(a) waypoint, empty chain" "$PA"
  bench b "(b) waypoint, full first-party chain" "$PB"
  bench c "(c) nginx routing reverse proxy" "$PN"
  bench d "(d) bare hyper proxy (the floor)" "$PD"
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
r = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    r.setdefault(k, []).append(float(v))
m = {k: statistics.median(v) for k, v in r.items()}
print(f"\nmedian of {len(r['a'])} rounds, requests/s: (a) {m['a']:.0f}  (b) {m['b']:.0f}  (c) {m['c']:.0f}  (d) {m['d']:.0f}")
print(f"(b)/(a) = {m['b'] / m['a']:.2f} (goal >= 0.85)   (b)/(c) = {m['b'] / m['c']:.2f} (goal >= 1)")
print(f"(d)/(c) = {m['d'] / m['c']:.2f}: the bare stack against nginx   (a)/(d) = {m['a'] / m['d']:.2f}: the waypoint's core against the bare stack")
print("per round (b)/(a): " + " ".join(f"{b / a:.2f}" for a, b in zip(r['a'], r['b'])))
PY
fi

# --- fixed rate: ~1,000 requests/s, 1 KiB bodies ------------------------------
cat >"$WORK/pace.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
function delay() return 20 end   -- 20 connections x 50 req/s each
EOF
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
fixed() { # name pid port
  local hz t0 c0 out c1 t1 rps cpu rss hwm anon file
  hz=$(getconf CLK_TCK)
  t0=$(date +%s.%N); c0=$(cpu_ticks "$2")
  out=$(wrk -t2 -c20 -d20s --latency -s "$WORK/pace.lua" -H "Host: $SVC" "${AUTH[@]}" "http://127.0.0.1:$3/")
  c1=$(cpu_ticks "$2"); t1=$(date +%s.%N)
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  cpu=$(python3 -c "print(f'{($c1 - $c0) / $hz / ($t1 - $t0):.3f}')")
  rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$2/status")
  hwm=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$2/status")
  # RSS = private (anonymous) + file-backed pages. The file part is mostly
  # the binary's code, shared with every process mapping it, and varies by
  # a few MB with the page cache (the kernel maps cached neighbours of each
  # page faulted in), so it is printed apart.
  anon=$(awk '/RssAnon/ {printf "%.1f", $2 / 1024}' "/proc/$2/status")
  file=$(awk '/RssFile/ {printf "%.1f", $2 / 1024}' "/proc/$2/status")
  printf '%-34s %10s %8s vCPU %8s MB RSS (anon %s + file %s; peak %s MB)  p50 %s p99 %s\n' "$1" "$rps" "$cpu" "$rss" "$anon" "$file" "$hwm" \
    "$(awk '$1 == "50%" {print $2}' <<<"$out")" "$(awk '$1 == "99%" {print $2}' <<<"$out")"
}
echo
echo "fixed rate, 1 KiB POST bodies, 20 s (wrk paced: 20 connections x 50 requests/s)"
fixed "(b) waypoint, full chain" "$WB" "$PB"
fixed "(a) waypoint, empty chain" "$WA" "$PA"
