#!/usr/bin/env bash
# ztunnel data-path benchmark: our HBONE path versus a direct connection, in
# the same run, between network namespaces on this machine.
#
#   sudo ztunnel/benches/bench-ztunnel.sh            # DURATION=10 by default
#   DURATION=5 ZT_BIN=/path/to/ztunnel sudo -E ztunnel/benches/bench-ztunnel.sh
#   ZT_ARGS="--worker-threads 1" ...   extra ztunnel flags
#   PROFILE=/tmp/zt.perf ...           perf profile of the 1-stream mesh run
#   PROFILE_PACED=/tmp/zp.perf ...     perf profile of the paced mesh run
#
#   zb-c  (enrolled)   ─┐                              ┌─ zb-s  (enrolled)
#   zb-c0 (not in mesh)─┤ br0 zb-n1 ══ link ══ zb-n2 br0 ├─ zb-s0 (not in mesh)
#                         ztunnel --node n1   ztunnel --node n2
#
# mesh path:   zb-c → ztunnel(n1, in zb-c's netns) ══HBONE/mTLS══ ztunnel(n2, in zb-s's netns) → zb-s
# direct path: zb-c0 → zb-s0 (plain routing through the same nodes)
# relay floor: zb-c0 → socat(n1) → socat(n2) → zb-s0: two plain TCP relays
#              where the ztunnels sit (no TLS, no HTTP/2), for the round
#              trips only; what any user-space relay pair costs on this box
#
# Measures iperf3 throughput (1 and 4 streams), TCP round trip p50/p99
# (ping-pong and paced at a fixed rate), new-connection rate, and the
# ztunnels' CPU time and RSS. Prints the numbers; needs root, iperf3,
# python3, jq, openssl, iproute2, iptables, socat.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench-ztunnel: needs root (network namespaces)"; exit 1; }
for t in iperf3 python3 jq openssl ip iptables awk socat; do
  command -v "$t" >/dev/null || { echo "bench-ztunnel: $t missing (scripts/setup.sh installs it)"; exit 1; }
done
DURATION=${DURATION:-10}
PY=/usr/bin/python3
BENCH_PY="$PWD/ztunnel/benches/tcp_bench.py"
if [ -z "${ZT_BIN:-}" ]; then
  [ -f scripts/env.sh ] && . scripts/env.sh
  echo "bench-ztunnel: building ztunnel (release)" >&2
  nice -n 10 cargo build --release -q -p ztunnel
  ZT_BIN="${CARGO_TARGET_DIR:-target}/release/ztunnel"
fi
WORK=$(mktemp -d /tmp/bench-ztunnel.XXXXXX)
PIDS=()
NSS=(zb-n1 zb-n2 zb-c zb-c0 zb-s zb-s0)

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; rm -rf "/etc/netns/$n"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done

ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

# --- topology ---------------------------------------------------------------
for i in 1 2; do
  ip netns add zb-n$i
  ns zb-n$i ip link set lo up
  ns zb-n$i sysctl -qw net.ipv4.ip_forward=1
  ns zb-n$i ip link add br0 type bridge
  ns zb-n$i ip addr add 10.150.$i.1/24 dev br0
  ns zb-n$i ip link set br0 up
done
ip link add zbl1 type veth peer name zbl2
ip link set zbl1 netns zb-n1; ip link set zbl2 netns zb-n2
ns zb-n1 ip addr add 10.150.0.1/30 dev zbl1; ns zb-n1 ip link set zbl1 up
ns zb-n2 ip addr add 10.150.0.2/30 dev zbl2; ns zb-n2 ip link set zbl2 up
ns zb-n1 ip route add 10.150.2.0/24 via 10.150.0.2
ns zb-n2 ip route add 10.150.1.0/24 via 10.150.0.1
pod() { # name node host
  local p=$1 node=$2 host=$3
  ip netns add "$p"
  ip link add "${p}i" type veth peer name "${p}o"
  ip link set "${p}i" netns "$p"; ip link set "${p}o" netns "zb-n$node"
  ns "zb-n$node" ip link set "${p}o" master br0 up
  ns "$p" ip link set "${p}i" name eth0
  ns "$p" ip addr add "10.150.$node.$host/24" dev eth0
  ns "$p" ip link set eth0 up; ns "$p" ip link set lo up
  ns "$p" ip route add default via "10.150.$node.1"
}
pod zb-c 1 2; pod zb-c0 1 3; pod zb-s 2 2; pod zb-s0 2 3

# --- mesh config --------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -keyout "$WORK/ca-key.pem" -out "$WORK/ca.pem" -subj "/O=cluster.local/CN=bench root" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
wl() { # name node ip sa protocol
  cat <<EOF
  - uid: Kubernetes//Pod/bench/$1
    name: $1
    namespace: bench
    serviceAccount: $4
    node: $2
    addresses: [$3]
    protocol: $5
EOF
}
{
  echo "workloads:"
  wl zb-c n1 10.150.1.2 client HBONE
  wl zb-c0 n1 10.150.1.3 client0 TCP
  wl zb-s n2 10.150.2.2 server HBONE
  wl zb-s0 n2 10.150.2.3 server0 TCP
} > "$WORK/mesh.yaml"

for i in 1 2; do
  # `ip netns exec` execs the program: $! is the ztunnel's own pid.
  ip netns exec zb-n$i "$ZT_BIN" --node n$i --capture inpod --netns-template '/var/run/netns/{name}' \
    --config-file "$WORK/mesh.yaml" --ca-cert "$WORK/ca.pem" --ca-key "$WORK/ca-key.pem" \
    --log-level warn ${ZT_ARGS:-} > "$WORK/ztunnel-n$i.log" 2>&1 &
  PIDS+=($!); eval "ZT$i=$!"
done
for i in 1 2; do
  for _ in $(seq 100); do
    ns zb-n$i curl -sf -m 1 http://127.0.0.1:15021/healthz/ready >/dev/null && break
    sleep 0.1
  done
  ns zb-n$i curl -sf -m 1 http://127.0.0.1:15021/healthz/ready >/dev/null || { cat "$WORK/ztunnel-n$i.log"; exit 1; }
done

for s in zb-s zb-s0; do
  ip netns exec $s iperf3 -s -p 5201 >/dev/null 2>&1 & PIDS+=($!)
  ip netns exec $s $PY "$BENCH_PY" serve 7000 >/dev/null 2>&1 & PIDS+=($!)
done
# The relay floor: one socat per node, a process per connection (select,
# read, write), TCP_NODELAY on both sides as ztunnel sets it.
ns zb-n1 socat TCP-LISTEN:7100,bind=10.150.1.1,reuseaddr,fork,nodelay TCP:10.150.0.2:7100,nodelay >/dev/null 2>&1 & PIDS+=($!)
ns zb-n2 socat TCP-LISTEN:7100,bind=10.150.0.2,reuseaddr,fork,nodelay TCP:10.150.2.3:7000,nodelay >/dev/null 2>&1 & PIDS+=($!)
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_both() { echo $(( $(cpu_ticks "$ZT1") + $(cpu_ticks "$ZT2") )); }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
TCK=$(getconf CLK_TCK)
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

IDLE1=$(rss_kb "$ZT1"); IDLE2=$(rss_kb "$ZT2")

iperf() { # client server streams -> "gbps cpu_seconds"
  local before after out perf_pid=""
  if [ -n "${PROFILE:-}" ] && [ "$1" = zb-c ] && [ "$3" = 1 ]; then
    # PROFILE=<file>: perf profile of both ztunnels during the 1-stream mesh run.
    perf record -q -g -p "$ZT1,$ZT2" -o "$PROFILE" -- sleep "$DURATION" >/dev/null 2>&1 & perf_pid=$!
  fi
  before=$(cpu_both)
  out=$(ns "$1" iperf3 -c "$2" -p 5201 -t "$DURATION" -P "$3" -J)
  after=$(cpu_both)
  [ -n "$perf_pid" ] && wait "$perf_pid"
  echo "$(echo "$out" | jq '.end.sum_received.bits_per_second / 1e9') $(calc "($after - $before) / $TCK")"
}

declare -A R
for path in direct mesh; do
  if [ $path = direct ]; then C=zb-c0; S=10.150.2.3; else C=zb-c; S=10.150.2.2; fi
  read -r R[$path,tp1] R[$path,cpu1] <<<"$(iperf $C $S 1)"
  read -r R[$path,tp4] R[$path,cpu4] <<<"$(iperf $C $S 4)"
  R[$path,pp]=$(ns $C $PY "$BENCH_PY" pingpong $S 7000 5000)
  perf_pid=""
  if [ -n "${PROFILE_PACED:-}" ] && [ $path = mesh ]; then
    # PROFILE_PACED=<file>: perf profile of both ztunnels during the paced run.
    perf record -q -g -p "$ZT1,$ZT2" -o "$PROFILE_PACED" -- sleep 2 >/dev/null 2>&1 & perf_pid=$!
  fi
  R[$path,paced]=$(ns $C $PY "$BENCH_PY" paced $S 7000 2000 1000)
  [ -n "$perf_pid" ] && wait "$perf_pid"
  before=$(cpu_both)
  R[$path,conn]=$(ns $C $PY "$BENCH_PY" connrate $S 7000 5)
  R[$path,conncpu]=$(calc "($(cpu_both) - $before) / $TCK")
done

R[relay,pp]=$(ns zb-c0 $PY "$BENCH_PY" pingpong 10.150.1.1 7100 5000)
R[relay,paced]=$(ns zb-c0 $PY "$BENCH_PY" paced 10.150.1.1 7100 2000 1000)

j() { echo "$1" | jq -r "$2"; }
printf '\n=== ztunnel benchmark (%ss per iperf run, %s cores, load average %s) ===\n' "$DURATION" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %14s %14s %16s\n' "" "direct" "mesh (HBONE)" "2 socat relays"
printf '%-34s %14.2f %14.2f\n' "iperf3 1 stream (Gbit/s)" "${R[direct,tp1]}" "${R[mesh,tp1]}"
printf '%-34s %14.2f %14.2f\n' "iperf3 4 streams (Gbit/s)" "${R[direct,tp4]}" "${R[mesh,tp4]}"
for k in pp paced; do
  label=$([ $k = pp ] && echo "ping-pong" || echo "paced 1000/s")
  for q in p50_us p99_us; do
    printf '%-34s %14s %14s %16s\n' "RTT $label $q" "$(j "${R[direct,$k]}" .$q)" "$(j "${R[mesh,$k]}" .$q)" "$(j "${R[relay,$k]}" .$q)"
  done
done
printf '%-34s %14s %14s\n' "new connections/s (1 client)" "$(j "${R[direct,conn]}" .per_second)" "$(j "${R[mesh,conn]}" .per_second)"
printf '%-34s %14s %14s\n' "  (failed connections)" "$(j "${R[direct,conn]}" .errors)" "$(j "${R[mesh,conn]}" .errors)"
echo
pp_over=$(calc "$(j "${R[mesh,pp]}" .p50_us) - $(j "${R[direct,pp]}" .p50_us)")
paced_over=$(calc "$(j "${R[mesh,paced]}" .p50_us) - $(j "${R[direct,paced]}" .p50_us)")
echo "p50 RTT overhead of the mesh: ping-pong ${pp_over} us, paced ${paced_over} us"
relay_pp=$(calc "$(j "${R[relay,pp]}" .p50_us) - $(j "${R[direct,pp]}" .p50_us)")
relay_paced=$(calc "$(j "${R[relay,paced]}" .p50_us) - $(j "${R[direct,paced]}" .p50_us)")
echo "p50 RTT overhead of two plain socat relays (the floor): ping-pong ${relay_pp} us, paced ${relay_paced} us"
gbit1=$(calc "${R[mesh,tp1]} * $DURATION")
gbit4=$(calc "${R[mesh,tp4]} * $DURATION")
printf 'ztunnel CPU (both ztunnels): 1 stream %.2f s for %.1f Gbit = %.3f CPU-s/Gbit; 4 streams %.2f s for %.1f Gbit = %.3f CPU-s/Gbit\n' \
  "${R[mesh,cpu1]}" "$gbit1" "$(calc "${R[mesh,cpu1]} / $gbit1")" "${R[mesh,cpu4]}" "$gbit4" "$(calc "${R[mesh,cpu4]} / $gbit4")"
printf 'ztunnel CPU during the connection-rate run: %s s (mesh)\n' "${R[mesh,conncpu]}"
printf 'ztunnel RSS idle (after enrolment, before traffic): n1 %d KiB, n2 %d KiB; peak (VmHWM): n1 %d KiB, n2 %d KiB\n' \
  "$IDLE1" "$IDLE2" "$(hwm_kb "$ZT1")" "$(hwm_kb "$ZT2")"
