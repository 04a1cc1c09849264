#!/usr/bin/env python3
"""TCP micro-benchmarks for bench-ztunnel.sh (run inside pod namespaces).

  tcp_bench.py serve PORT                  echo server (1 thread per connection)
  tcp_bench.py pingpong HOST PORT N        N sequential 1-byte round trips on one
                                           connection, as fast as possible
  tcp_bench.py paced HOST PORT N RATE      N round trips at RATE per second
  tcp_bench.py connrate HOST PORT SECONDS  connect + 1-byte round trip + close, in a loop

Prints one JSON object: latencies in microseconds (p50/p90/p99/mean) or a
connection rate. The same script runs for the direct path and the mesh path,
so its own overhead cancels out in the comparison.
"""
import json
import socket
import sys
import threading
import time


def serve(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1024)

    def handle(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def percentiles(samples):
    samples.sort()
    n = len(samples)
    pick = lambda q: samples[min(n - 1, int(q * n))]
    return {
        "n": n,
        "p50_us": round(pick(0.50), 1),
        "p90_us": round(pick(0.90), 1),
        "p99_us": round(pick(0.99), 1),
        "mean_us": round(sum(samples) / n, 1),
    }


def connect(host, port):
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def roundtrips(host, port, n, rate=None):
    s = connect(host, port)
    # warm up (first stream, pooled connection, caches)
    for _ in range(200):
        s.sendall(b"x")
        s.recv(1)
    out = []
    interval = 1.0 / rate if rate else 0
    next_t = time.perf_counter()
    for _ in range(n):
        if interval:
            now = time.perf_counter()
            if now < next_t:
                time.sleep(next_t - now)
            next_t += interval
        t0 = time.perf_counter_ns()
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise SystemExit("echo mismatch")
        out.append((time.perf_counter_ns() - t0) / 1000.0)
    s.close()
    return percentiles(out)


def connrate(host, port, seconds):
    end = time.perf_counter() + seconds
    n = 0
    errors = 0
    while time.perf_counter() < end:
        try:
            s = connect(host, port)
            s.sendall(b"x")
            if s.recv(1) == b"x":
                n += 1
            else:
                errors += 1
            s.close()
        except OSError:
            errors += 1
    return {"connections": n, "errors": errors, "per_second": round(n / seconds, 1)}


def main():
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(int(sys.argv[2]))
    elif cmd == "pingpong":
        print(json.dumps(roundtrips(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    elif cmd == "paced":
        print(json.dumps(roundtrips(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))))
    elif cmd == "connrate":
        print(json.dumps(connrate(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
