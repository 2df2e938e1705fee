#!/usr/bin/env bash
# Set-up time of a direct connection through two NATs (contrib/netlab, docs/NAT.md): h1
# behind nat1 and h2 behind nat2 meet through a bootstrap node on the lab's public segment and
# become contacts; h1's first `parley ping` is the first-ever connection. Then RUNS times each:
#  - `parley down` + `parley up` of h1 (same flags and port), wait until h1's DHT state is
#    "connected", `parley ping H2 --count 3 --json`. h1's goodbye makes h2 put a connect
#    request into h1's inbox, so the link is usually up again before the ping (then "reused":
#    the script reports when the link came up, from the link's age);
#  - kill -9 + `parley up` of h1, the same: no goodbye, so the ping sets the connection up.
# Prints each run, then p50/p95 of setup_ms, the median RTT and the time from `parley up` to
# DHT connected. Prints figures; never fails on time. Root only (network namespaces,
# nftables); the lab and the daemons are removed on exit.
#
#   usage: contrib/netlab/bench.sh [RUNS=10]
#   env:   PARLEY=path/to/parley (default: $PARLEY_BUILD_DIR/bin/parley, build dir "build")
#          PARLEY_BENCH_KEY_BITS=2048 (identity size of the three nodes)
#          PARLEY_NETLAB_LOG=info (daemons' log level), PARLEY_NETLAB_BENCH_LOGS=DIR (copy
#          the daemons' logs there on exit)
set -u
RUNS=${1:-10}
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PARLEY=${PARLEY:-$ROOT/${PARLEY_BUILD_DIR:-build}/bin/parley}
NETLAB="$ROOT/contrib/netlab/netlab.sh"
KEY_BITS=${PARLEY_BENCH_KEY_BITS:-2048}
die() { echo "netlab bench: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces and nftables)"
for t in ip nft python3; do command -v "$t" >/dev/null || die "'$t' not found"; done
[ -x "$PARLEY" ] || die "no parley binary at $PARLEY (build it, or set PARLEY=...)"
[[ $RUNS =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] || die "RUNS must be a positive number"

PREFIX="plab-b$$"
WORK=$(mktemp -d /tmp/parley-netlab-bench.XXXXXX)
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
export NETLAB_STATE_DIR="$WORK/netlab" # our lab only: other labs on the machine are not touched
PUB_IP=$("$NETLAB" addr pub)
BOOT_PORT=4222 H1_PORT=4301 H2_PORT=4302

# `down` kills every process in the lab's namespaces (the daemons too) and deletes them.
cleanup() {
    [ -n "${PARLEY_NETLAB_BENCH_LOGS:-}" ] && for h in pub h1 h2; do cp "$WORK/$h/daemon.log" "$PARLEY_NETLAB_BENCH_LOGS/$h.log" 2>/dev/null; done
    "$NETLAB" down --prefix "$PREFIX" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

on() { local h=$1; shift; "$NETLAB" exec --prefix "$PREFIX" "$h" "$@"; }
p() { local h=$1; shift; on "$h" "$PARLEY" --profile "$WORK/$h" "$@"; }
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d'+sys.argv[2]))" "$@" 2>/dev/null; }
now_ms() { date +%s%3N; }
poll() { # poll SECONDS COMMAND...
    local deadline=$(( $(date +%s) + $1 ))
    shift
    while [ "$(date +%s)" -lt "$deadline" ]; do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}
daemon_flags() { # the same flags for every start of a host's daemon
    case $1 in
        pub) echo "--network $NET --no-lan --log-level ${PARLEY_NETLAB_LOG:-info} --bind $PUB_IP --port $BOOT_PORT" ;;
        h1) echo "--network $NET --no-lan --log-level ${PARLEY_NETLAB_LOG:-info} --port $H1_PORT --bootstrap $PUB_IP:$BOOT_PORT" ;;
        h2) echo "--network $NET --no-lan --log-level ${PARLEY_NETLAB_LOG:-info} --port $H2_PORT --bootstrap $PUB_IP:$BOOT_PORT" ;;
    esac
}
# shellcheck disable=SC2046 # the flags are meant to split
up() { p "$1" up $(daemon_flags "$1") >"$WORK/up.$1" 2>&1 || { cat "$WORK/up.$1"; die "up $1"; }; }
dht_connected() { p "$1" status --json >"$WORK/st.$1" 2>/dev/null && [ "$(jget "$WORK/st.$1" "['dht']['state']")" = connected ]; }

"$NETLAB" up --prefix "$PREFIX" >"$WORK/lab.log" 2>&1 || { cat "$WORK/lab.log"; die "netlab up"; }
for h in pub h1 h2; do
    p "$h" init --name "$h" --key-bits "$KEY_BITS" >"$WORK/$h.id" 2>"$WORK/init.err" || { cat "$WORK/init.err"; die "init $h"; }
done
H1=$(cat "$WORK/h1.id")
H2=$(cat "$WORK/h2.id")
up pub
up h1
up h2
poll 30 dht_connected h1 || die "h1's DHT never connected"
poll 30 dht_connected h2 || die "h2's DHT never connected"

p h1 contact add "$H2" --message "netlab bench" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; die "contact add"; }
has_request() { p h2 contact requests --json 2>/dev/null | grep -q "$H1"; }
poll 30 has_request || die "h2 never saw h1's request"
p h2 contact accept "$H1" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; die "contact accept"; }
accepted() { p h1 contacts --json 2>/dev/null | grep -q '"state":"accepted"'; }
poll 30 accepted || die "h1 never saw the acceptance"
online() { p "$1" lookup "$2" --timeout 2 --json 2>/dev/null | grep -q '"state":"online"'; }
poll 20 online h1 "$H2" || die "h1 does not see h2 online"

# ping_once LABEL [UP_STARTED_MS]: one `parley ping` from h1; appends "setup_ms wall_ms link_age_ms rtt..." to
# $WORK/LABEL.txt (setup_ms empty when an open link was reused) and prints the run.
ping_once() {
    local t0 t1 out="$WORK/ping.json"
    t0=$(now_ms)
    p h1 ping "$H2" --count 3 --json >"$out" 2>"$WORK/ping.err"
    t1=$(now_ms)
    p h1 status --json >"$WORK/links.json" 2>/dev/null
    local since_up=""
    [ -n "$2" ] && since_up=$(( $(now_ms) - $2 ))
    python3 - "$out" "$((t1 - t0))" "$1" "$WORK/$1.txt" "$WORK/links.json" "$H2" "$since_up" <<'PY'
import json, sys
path, wall, label, record, links, peer, since_up = sys.argv[1:]
try:
    r = json.load(open(path))
except Exception:
    r = {"connected": False, "error": "no JSON from parley ping"}
if not r.get("connected"):
    print(f"  {label}: FAILED ({r.get('error', '?')}), {wall} ms")
    sys.exit(0)
# How long the link had been up when the ping returned: when it was set up before the ping
# (reused), that dates it relative to `parley up`.
age = ""
try:
    lj = json.load(open(links))
    for l in lj.get("links", []):
        if l.get("id") == peer:
            age = f"{l['age_s'] * 1000:.0f}"
except Exception:
    pass
rtts = [v for v in r.get("rtt_ms", []) if v is not None]
setup = "" if r.get("reused") else f"{r['setup_ms']:.1f}"
what = "reused an open link" if r.get("reused") else f"setup {setup} ms"
extra = ""
if r.get("reused") and age and since_up:
    extra = f" (link up {int(since_up) - int(age)} ms after `parley up` began)"
print(f"  {label}: {what}{extra}, ping command {wall} ms, role {r['role']}, remote {r['remote']}, "
      "rtt " + " ".join(f"{v:.3f}" for v in rtts) + " ms")
with open(record, "a") as f:
    up_to_link = int(since_up) - int(age) if (r.get("reused") and age and since_up) else ""
    f.write(f"{setup or '-'} {wall} {up_to_link if up_to_link != '' else '-'} {' '.join(map(str, rtts))}\n")
PY
}

echo "netlab bench: h1 (behind nat1) -> h2 (behind nat2), RSA-$KEY_BITS identities, $RUNS restarts of h1 of each kind"
ping_once first ""
# (1) `parley down` + `parley up`: h1 says goodbye; then, as soon as h1's DHT is connected, ping.
joins=()
for run in $(seq 1 "$RUNS"); do
    p h1 down >/dev/null 2>&1 || die "down h1"
    t0=$(now_ms)
    up h1
    poll 30 dht_connected h1 || die "h1's DHT never connected after restart $run"
    joins+=($(( $(now_ms) - t0 )))
    ping_once down-up "$t0"
done
# (2) kill -9 + `parley up`: no goodbye, h2 still holds the dead connection; ping as above.
for run in $(seq 1 "$RUNS"); do
    pid=$(p h1 status --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])') || die "no pid for h1"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
    t0=$(now_ms)
    up h1
    poll 30 dht_connected h1 || die "h1's DHT never connected after kill $run"
    joins+=($(( $(now_ms) - t0 )))
    ping_once kill-up "$t0"
done

python3 - "$WORK" "${joins[*]}" <<'PY'
import os, statistics, sys
work, joins = sys.argv[1], [float(x) for x in sys.argv[2].split()]
def rows(label):
    path = os.path.join(work, label + ".txt")
    if not os.path.exists(path):
        return []
    return [line.split() for line in open(path) if line.strip()]
def pct(v, p):
    v = sorted(v)
    return v[int(p * (len(v) - 1))]
def num(col, rs):
    return [float(r[col]) for r in rs if r[col] != "-"]
def summary(title, rs):
    if not rs:
        print(f"  {title}: no successful run")
        return
    setup, wall, uplink = num(0, rs), num(1, rs), num(2, rs)
    rtt = [float(x) for r in rs for x in r[3:]]
    line = f"  {title}: {len(rs)} runs ok"
    if setup:
        line += (f"; set up by the ping in {len(setup)}: setup_ms p50 {pct(setup, .5):.1f} "
                 f"p95 {pct(setup, .95):.1f} (min {min(setup):.1f}, max {max(setup):.1f})")
    if uplink:
        line += (f"; link already up in {len(uplink)}, up {pct(uplink, .5):.0f} ms "
                 f"(p95 {pct(uplink, .95):.0f}) after `parley up` began")
    print(line)
    print(f"      ping command p50 {pct(wall, .5):.0f} ms; RTT median {statistics.median(rtt):.3f} ms "
          f"(max {max(rtt):.3f}, {len(rtt)} pings)")
print("results")
summary("first-ever connection", rows("first"))
summary("after `parley down` + `parley up` of h1", rows("down-up"))
summary("after kill -9 + `parley up` of h1", rows("kill-up"))
if joins:
    print(f"  h1 start: `parley up` began -> DHT connected p50 {pct(joins, .5):.0f} ms "
          f"(max {max(joins):.0f}); not part of setup_ms")
PY
