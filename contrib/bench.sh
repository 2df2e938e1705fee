#!/usr/bin/env bash
# Runs parley's benchmarks on a release build and prints figures (loopback only, private
# network ids). Figures and commands are recorded in docs/PERFORMANCE.md.
# Usage: contrib/bench.sh [--no-setup] [IDLE_SECONDS=60]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--no-setup" ]; then shift; else
    bash contrib/install-deps.sh
fi
[ -n "${PARLEY_BENCH_NO_BUILD:-}" ] || bash contrib/build.sh "${PARLEY_BUILD_DIR:-build}" >/dev/null
IDLE=${1:-60}
BIN=$PWD/${PARLEY_BUILD_DIR:-build}/bin
WORK=$(mktemp -d /tmp/parley-bench.XXXXXX)
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
cleanup() {
    for p in "$WORK"/*/; do [ -S "$p/control.sock" ] && "$BIN/parley" --profile "$p" down >/dev/null 2>&1; done
    [ -n "${STOCK:-}" ] && kill "$STOCK" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== identity creation"
"$BIN/bench_identity" 10

echo "== lookup latency"
"$BIN/bench_lookup" 20 400

echo "== direct connections: set-up, RTT, one stream vs TLS/TCP (the NAT lab: contrib/netlab/bench.sh, root)"
"$BIN/bench_links" 10 500 1024 0 5
"$BIN/bench_chat" 1000 20000 30

echo "== daemon start to DHT connected (bootstrap: a stock dhtnode on 127.0.0.1)"
PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dhtnode -s -p "$PORT" -n "$NET" >/dev/null 2>&1 &
STOCK=$!
sleep 0.5
"$BIN/parley" --profile "$WORK/seed" init --key-bits 2048 >/dev/null 2>&1
"$BIN/parley" --profile "$WORK/seed" up --bind 127.0.0.1 --network "$NET" --bootstrap "127.0.0.1:$PORT" >/dev/null 2>&1
"$BIN/parley" --profile "$WORK/d" init >/dev/null 2>&1
python3 - "$BIN/parley" "$WORK/d" "$NET" "$PORT" <<'PY'
import json, os, socket, statistics, subprocess, sys, time
parley, prof, net, port = sys.argv[1:]
def status():
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(prof, "control.sock"))
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
    buf = b""
    while not buf.endswith(b"\n"):
        buf += s.recv(65536)
    s.close()
    return json.loads(buf)["result"]
times = []
for run in range(10):
    t0 = time.monotonic()
    p = subprocess.Popen([parley, "--profile", prof, "daemon", "--bind", "127.0.0.1", "--network", net,
                          "--bootstrap", "127.0.0.1:" + port, "--log-level", "warn"])
    while True:
        try:
            if status()["dht"]["state"] == "connected":
                break
        except OSError:
            pass
        time.sleep(0.002)
    times.append((time.monotonic() - t0) * 1000)
    p.terminate(); p.wait()
    os.remove(os.path.join(prof, "nodes.txt")) if os.path.exists(os.path.join(prof, "nodes.txt")) else None
times.sort()
print(f"  10 runs (RSA-3072 profile, process start included): p50 {statistics.median(times):.0f} ms, "
      f"min {times[0]:.0f} ms, max {times[-1]:.0f} ms")
PY

echo "== idle daemon: RSS and CPU over ${IDLE} s (3-node network on loopback)"
"$BIN/parley" --profile "$WORK/idle" init >/dev/null 2>&1
"$BIN/parley" --profile "$WORK/idle" up --bind 127.0.0.1 --network "$NET" --bootstrap "127.0.0.1:$PORT" >/dev/null 2>&1
PID=$("$BIN/parley" --profile "$WORK/idle" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
sleep 5
HZ=$(getconf CLK_TCK)
t0=$(awk '{print $14+$15}' /proc/$PID/stat)
sleep "$IDLE"
t1=$(awk '{print $14+$15}' /proc/$PID/stat)
RSS=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
THREADS=$(awk '/Threads/ {print $2}' /proc/$PID/status)
python3 -c "print(f'  RSS {$RSS/1024:.1f} MiB, CPU {($t1-$t0)/$HZ/$IDLE*100:.3f} % of a core, {$THREADS} threads')"
