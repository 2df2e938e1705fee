#!/usr/bin/env bash
# File transfers through the NAT lab (contrib/netlab/netlab.sh, docs/NAT.md): h1 behind nat1
# shares with h2 behind nat2, over the direct QUIC link through both NATs.
#   1. `netlab.sh up --loss 5`: each router drops 5 % of what it forwards, both ways; a UDP
#      count through each router shows it (about 90 % of the datagrams come back);
#   2. a folder tree (nested and empty folders, a 0-byte file, a 24 MiB file, 300 small files,
#      names in several scripts) with that loss: h2 accepts it, the copy is identical by
#      diff -r, with the same mode and modification time on every entry (stat); the time and
#      the rate are printed;
#   3. the address changes mid-transfer: while a 128 MiB file is in flight (loss off), nat1
#      gets a new public address (`netlab.sh move nat1`: the old one and its masquerade
#      entries are gone, as when the ISP renumbers a home router). The transfer must go on and
#      complete byte-identical (sha256sum) without fetching verified chunks again (h2's
#      chunks_fetched x chunk size against the file size), and the link must end up on the new
#      address; how long the bytes stopped is printed.
# Everything runs in the lab's namespaces: nothing in the root namespace, nothing leaves the
# machine. Needs root, iproute2, nftables and python3; skips (77) otherwise.
# PARLEY_NETLAB_KEEP=1 keeps the work folder (logs, profiles; not the data) for a look after.
# Usage: test_netlab_transfer.sh PATH_TO_PARLEY
set -u
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PARLEY=${1:?usage: test_netlab_transfer.sh PATH_TO_PARLEY}
skip_unless_root "NAT lab transfer test needs root, iproute2, nftables and python3" ip nft python3
PREFIX="plab-f$$"
LOSS=5
# The chunk size the daemon picks for files below 128 Ki chunks of it, and the receiver's
# requests in flight (node/transfer/manifest.h, receive_core.h), as in test_transfer.sh.
CHUNK=$((128 * 1024))
IN_FLIGHT=16
# How long the transfer after the move may take to get going again before the test gives up.
RECOVER_MAX=${PARLEY_NETLAB_RECOVER_MAX:-90}
export LC_ALL=C.UTF-8
started=$SECONDS

# A run killed outright (SIGKILL on a CTest timeout) cannot clean up: remove the labs and work
# folders of earlier runs whose shell is gone (their names carry that shell's PID).
remove_stale_labs plab-f
for state in /tmp/parley-netlab-transfer.*/pid; do
    [ -e "$state" ] && ! kill -0 "$(cat "$state")" 2>/dev/null && rm -rf "${state%/pid}"
done
# Probe in a throwaway namespace: can we make one, and do masquerade and numgen work there?
add_netns_or_skip "$PREFIX-probe"
if ! ip netns exec "$PREFIX-probe" nft -f - 2>/dev/null <<'EOF'
table ip probe {
    chain p { type nat hook postrouting priority srcnat; oifname "x" masquerade; }
    chain f { type filter hook forward priority filter; numgen random mod 1000 < 50 drop; }
}
EOF
then
    ip netns del "$PREFIX-probe"
    skip "nftables masquerade or numgen is not available in a network namespace"
fi
ip netns del "$PREFIX-probe"

WORK=$(mktemp -d /tmp/parley-netlab-transfer.XXXXXX)
echo $$ >"$WORK/pid"
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
# The lab's state file goes to our temp dir: other labs on the machine are not touched.
export NETLAB_STATE_DIR="$WORK/netlab"
PUB_IP=$("$NETLAB" addr pub)
NAT1_IP=$("$NETLAB" addr nat1)
NAT2_IP=$("$NETLAB" addr nat2)
BOOT_PORT=4222 H1_PORT=4301 H2_PORT=4302
TREE="$WORK/data/tree"
IN="$WORK/in"

# `down` kills every process in the lab's namespaces (the daemons too) and deletes them: on
# every way out, a failure or a signal included.
cleanup() {
    "$NETLAB" down --prefix "$PREFIX" >/dev/null 2>&1
    if [ -n "${PARLEY_NETLAB_KEEP:-}" ]; then
        find "$WORK" -name '*.bin' -delete
        echo "kept $WORK (the daemons' logs and profiles)"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
# A signal must end the script through `exit`, or bash would not run the EXIT trap.
trap 'exit 143' TERM INT HUP

# parley as the user on host H, with H's profile: p H ARGS...
p() { local h=$1; shift; on "$h" "$PARLEY" --profile "$WORK/$h" "$@"; }
logs() {
    local h
    for h in pub h1 h2; do
        [ -f "$WORK/$h/daemon.log" ] || continue
        echo "--- $h daemon.log (last ${PARLEY_NETLAB_TAIL:-15} lines)"
        tail -"${PARLEY_NETLAB_TAIL:-15}" "$WORK/$h/daemon.log"
    done
}
finish() { # finish MESSAGE: the summary, the logs on a failure, and the exit code
    summary "netlab transfer" "$1" || { logs; exit 1; }
    exit 0
}
same() { # same "description" EXPECTED GOT
    if [ "$2" = "$3" ]; then pass; else fail "$1: '$3', expected '$2'"; fi
}
# field HOST ID KEY: that transfer's KEY in HOST's `transfers --json` (nothing if not listed).
field() {
    p "$1" transfers --json 2>/dev/null | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["id"] == sys.argv[1]:
        print(t[sys.argv[2]])' "$2" "$3"
}
has_state() { [ "$(field "$1" "$2" state)" = "$3" ]; }
# counter HOST NAME: transfer_counters.NAME of HOST's daemon (0 when absent).
counter() {
    p "$1" status --json 2>/dev/null | python3 -c '
import json, sys
print(json.load(sys.stdin).get("transfer_counters", {}).get(sys.argv[1], 0))' "$2"
}
# link_remote HOST: the remote address of HOST's link (status --json), or nothing.
link_remote() {
    p "$1" status --json 2>/dev/null | python3 -c '
import json, sys
links = json.load(sys.stdin).get("links", [])
print(links[0].get("remote", "") if links else "")'
}
mib_s() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f MiB/s", (s > 0 ? b / s / 1048576 : 0) }'; }
now_ms() { date +%s%3N; }

"$NETLAB" up --prefix "$PREFIX" --loss "$LOSS" >"$WORK/up.log" 2>&1 ||
    { cat "$WORK/up.log"; echo "FAIL: netlab up --loss $LOSS"; exit 1; }

# --- 1. the loss, with plain UDP before any parley -------------------------------------------
# count.py echo PORT SECONDS: echo every datagram. count.py send IP PORT N: send N numbered
# datagrams 0.2 ms apart (no queue overflows), print how many different ones came back.
cat >"$WORK/count.py" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if sys.argv[1] == "echo":
    s.bind(("0.0.0.0", int(sys.argv[2])))
    s.settimeout(float(sys.argv[3]))
    try:
        while True:
            d, a = s.recvfrom(100)
            s.sendto(d, a)
    except OSError:
        pass
else:
    n, got = int(sys.argv[4]), set()
    s.setblocking(False)
    def drain():
        try:
            while True:
                got.add(s.recv(100))
        except BlockingIOError:
            pass
    for i in range(n):
        s.sendto(str(i).encode(), (sys.argv[2], int(sys.argv[3])))
        time.sleep(0.0002)
        drain()
    time.sleep(0.3)
    drain()
    print(len(got))
EOF
on pub python3 "$WORK/count.py" echo 7000 6 &
sleep 0.3
# 1000 datagrams through one router twice (there and back): 0.95^2 = 90.25 % expected, a
# standard deviation under 1 %; 85-95 % is far outside chance either way.
for h in h1 h2; do
    back=$(on "$h" python3 "$WORK/count.py" send "$PUB_IP" 7000 1000)
    if [ -n "$back" ] && [ "$back" -ge 850 ] && [ "$back" -le 950 ]; then pass; else
        fail "with --loss $LOSS, $back of 1000 datagrams $h -> pub -> $h came back, expected 850-950"; fi
    echo "loss: $back of 1000 datagrams $h -> pub -> $h came back (${LOSS}% loss each way through its router)"
done
wait
for r in nat1 nat2; do
    dropped=$(on "$r" nft list chain ip netlab loss | grep -oE 'packets [0-9]+' | grep -oE '[0-9]+')
    if [ "${dropped:-0}" -gt 0 ]; then pass; else fail "$r's loss rule dropped nothing"; fi
done

# --- parley: a bootstrap node on pub, h1 and h2 behind their NATs, made contacts ------------
for h in pub h1 h2; do
    p "$h" init --name "$h" --key-bits 2048 >"$WORK/$h.id" 2>"$WORK/init.err" ||
        { cat "$WORK/init.err"; fail "init $h"; finish "init"; }
done
H1=$(cat "$WORK/h1.id")
H2=$(cat "$WORK/h2.id")
up() { # up HOST ARGS...
    local h=$1
    shift
    p "$h" up --network $NET --no-lan --log-level "${PARLEY_NETLAB_LOG:-info}" "$@" >"$WORK/up.$h" 2>&1 ||
        { fail "up $h"; cat "$WORK/up.$h"; }
}
up pub --bind "$PUB_IP" --port $BOOT_PORT
up h1 --port $H1_PORT --bootstrap "$PUB_IP:$BOOT_PORT"
up h2 --port $H2_PORT --bootstrap "$PUB_IP:$BOOT_PORT"
[ $failures -eq 0 ] || finish "daemons did not start"
public_is() { [ "$(p "$1" status --json 2>/dev/null | jget /dev/stdin "['dht']['public_address']")" = "$2" ]; }
wait_until 30 public_is h1 "$NAT1_IP" && pass || fail "h1's DHT never reported $NAT1_IP as its public address"
wait_until 10 public_is h2 "$NAT2_IP" && pass || fail "h2's DHT never reported $NAT2_IP as its public address"
p h1 contact add "$H2" --message "files through two NATs" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; fail "contact add"; }
has_request() { p h2 contact requests --json 2>/dev/null | grep -q "$H1"; }
wait_until 30 has_request && pass || fail "h2 never saw h1's request"
p h2 contact accept "$H1" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; fail "contact accept"; }
accepted() { p h1 contacts --json 2>/dev/null | grep -q '"state":"accepted"'; }
wait_until 30 accepted && pass || fail "h1 never saw the acceptance"
[ $failures -eq 0 ] || finish "no contacts"
echo "lab, daemons and contacts after $((SECONDS - started)) s; QUIC client: $([[ $H1 < $H2 ]] && echo h1 || echo h2)"

# --- 2. a folder tree with 5 % loss -----------------------------------------------------------
mkdir -p "$TREE/a/b/c" "$TREE/empty" "$TREE/Grüße" "$TREE/日本語/深い" "$TREE/Ελληνικά" \
    "$TREE/Кириллица" "$TREE/عربي" "$TREE/with spaces"
: >"$TREE/zero bytes"
head -c $((24 << 20)) /dev/urandom >"$TREE/big.bin"
echo "deep" >"$TREE/a/b/c/deep.txt"
echo "hallo" >"$TREE/Grüße/Straße.txt"
echo "こんにちは" >"$TREE/日本語.txt"
echo "こんにちは" >"$TREE/日本語/深い/ファイル.txt"
echo "γειά" >"$TREE/Ελληνικά/αρχείο.txt"
echo "привет" >"$TREE/Кириллица/файл.txt"
echo "مرحبا" >"$TREE/عربي/ملف.txt"
printf '#!/bin/sh\necho hi\n' >"$TREE/a/run.sh"
# 300 small files in 12 folders, each with its own time in the past.
python3 - "$TREE/small" <<'EOF'
import os, sys
root = sys.argv[1]
for i in range(300):
    d = os.path.join(root, "d%02d" % (i % 12))
    os.makedirs(d, exist_ok=True)
    f = os.path.join(d, "f%03d.txt" % i)
    with open(f, "wb") as out:
        out.write(os.urandom(i * 37 % 5000))
    os.utime(f, (1_000_000_000 + i * 3600, 1_000_000_000 + i * 3600))
EOF
chmod 755 "$TREE/a/run.sh"
chmod 600 "$TREE/Grüße/Straße.txt"
chmod 640 "$TREE/small/d03/f003.txt"
chmod 700 "$TREE/a/b"
chmod 750 "$TREE/日本語"
touch -d '2001-02-03 04:05:06' "$TREE/big.bin" "$TREE/zero bytes" "$TREE/Grüße/Straße.txt" \
    "$TREE/日本語.txt" "$TREE/日本語/深い/ファイル.txt" "$TREE/Кириллица/файл.txt"
# Folders last (writing into a folder changes its time), the deepest first.
find "$TREE" -mindepth 1 -depth -type d -exec touch -d '2010-10-10 10:10:10' {} +
TREE_BYTES=$(du -sb --apparent-size "$TREE" | cut -f1)
TREE_FILES=$(find "$TREE" -type f | wc -l)
# stat_list DIR: every entry below DIR with its kind, mode and modification time, sorted.
stat_list() { (cd "$1" && find . -mindepth 1 -exec stat -c '%n|%F|%a|%Y' {} + | LC_ALL=C sort); }

p h1 share "$H2" "$TREE" >"$WORK/share.out" 2>"$WORK/share.err" || { cat "$WORK/share.err"; fail "share the tree"; }
TREE_ID=$(head -1 "$WORK/share.out")
wait_until 30 has_state h2 "$TREE_ID" offered && pass || fail "h2 never saw the offer of the tree"
t0=$(now_ms)
if timeout 150 "$NETLAB" exec --prefix "$PREFIX" h2 "$PARLEY" --profile "$WORK/h2" \
    transfer accept "$TREE_ID" --to "$IN" --wait >"$WORK/accept.out" 2>"$WORK/accept.err"; then pass; else
    fail "transfer accept --wait of the tree"; sed 's/^/  /' "$WORK/accept.out" "$WORK/accept.err" | tail -5; fi
ms=$(( $(now_ms) - t0 ))
echo "tree with ${LOSS}% loss per router: $TREE_FILES files, $TREE_BYTES bytes in $((ms / 1000)).$(printf %03d $((ms % 1000))) s" \
    "($(mib_s "$TREE_BYTES" "$(awk -v m="$ms" 'BEGIN { print m / 1000 }')")); h2 said: $(grep '^completed:' "$WORK/accept.out")"
if diff -r "$TREE" "$IN/tree" >"$WORK/diff" 2>&1; then pass; else
    fail "diff -r of the tree differs"; head -10 "$WORK/diff" | sed 's/^/  /'; fi
stat_list "$TREE" >"$WORK/stat.sent"
stat_list "$IN/tree" >"$WORK/stat.got" 2>&1
if diff "$WORK/stat.sent" "$WORK/stat.got" >"$WORK/stat.diff"; then pass; else
    fail "kinds, modes or times differ (< sent, > received):"; head -10 "$WORK/stat.diff" | sed 's/^/  /'; fi
echo "compared $(wc -l <"$WORK/stat.sent") entries by kind, mode and mtime"
wait_until 20 has_state h1 "$TREE_ID" completed && pass ||
    fail "h1's side of the tree is '$(field h1 "$TREE_ID" state)', expected completed"

# --- 3. the address changes mid-transfer ------------------------------------------------------
"$NETLAB" loss --prefix "$PREFIX" 0 || fail "netlab loss 0"
SIZE=$((128 << 20))
head -c $SIZE /dev/urandom >"$WORK/data/moving.bin"
SUM=$(sha256sum <"$WORK/data/moving.bin" | cut -d' ' -f1)
p h1 share "$H2" "$WORK/data/moving.bin" >"$WORK/share.out" 2>"$WORK/share.err" || { cat "$WORK/share.err"; fail "share the 128 MiB file"; }
MOVE_ID=$(head -1 "$WORK/share.out")
wait_until 30 has_state h2 "$MOVE_ID" offered && pass || fail "h2 never saw the offer of the 128 MiB file"
fetched0=$(counter h2 chunks_fetched)
timeouts0=$(counter h2 chunk_timeouts)
p h2 transfer accept "$MOVE_ID" --to "$IN" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; fail "accept the 128 MiB file"; }
# part_bytes: what h2's partial file holds (allocated blocks: chunks are written in place into
# a sparse file); stat is quick, where an ASan `transfers --json` takes a good part of a second.
part_bytes() {
    local part
    part=$(find "$IN" -maxdepth 1 -name '.moving.bin.*.parley-part' 2>/dev/null | head -1)
    if [ -n "$part" ]; then echo $(( $(stat -c '%b * %B' "$part") )); else echo 0; fi
}
t0=$(now_ms)
until [ "$(part_bytes)" -gt $((SIZE / 10)) ] || [ -e "$IN/moving.bin" ] || [ $(( $(now_ms) - t0 )) -gt 60000 ]; do
    sleep 0.05
done
at10=$(part_bytes)
if [ -e "$IN/moving.bin" ] || [ "$at10" -le $((SIZE / 10)) ]; then
    fail "the 128 MiB file was not in flight at 10 % (complete: $([ -e "$IN/moving.bin" ] && echo yes || echo no), $at10 bytes)"
    finish "no move"
fi
rate_ms=$(( $(now_ms) - t0 ))
declare -A log_at_move
for h in h1 h2; do log_at_move[$h]=$(wc -l <"$WORK/$h/daemon.log"); done
t1=$(now_ms)
NEW_NAT1=$("$NETLAB" move --prefix "$PREFIX" nat1) || { fail "netlab move nat1"; finish "no move"; }
moved=$(now_ms)
before=$(part_bytes)
# (Asked after the move, which is quicker than an ASan `status`: the old connection is still
# h2's link then, nothing has told it otherwise.)
link_before=$(link_remote h2)
echo "moved nat1 from $NAT1_IP to $NEW_NAT1 at $((before * 100 / SIZE)) % of the file (10 % after $rate_ms ms:" \
    "$(mib_s "$at10" "$(awk -v m="$rate_ms" 'BEGIN { print m / 1000 }')"); \`netlab move\` took $((moved - t1)) ms);" \
    "h2's link was to $link_before"
# The bytes stop when the path breaks: the partial file stops growing (what was already on
# its way still lands: wait until it has not grown for a second). They flow again once it has
# 1 MiB more than where it stopped. Both are taken from the move.
grown_at=$moved last=$before stall_ms="" flowing_ms="" stalled=""
while [ $(( $(now_ms) - moved )) -lt $((RECOVER_MAX * 1000)) ]; do
    got=$(part_bytes)
    [ -e "$IN/moving.bin" ] && got=$SIZE
    t=$(now_ms)
    if [ -z "$stalled" ]; then
        if [ "$got" -ne "$last" ]; then
            last=$got grown_at=$t
        elif [ $((t - grown_at)) -ge 1000 ]; then
            stalled=$got stall_ms=$((grown_at - moved))
        fi
        if [ "$got" -ge $SIZE ]; then flowing_ms=0; break; fi
    elif [ "$got" -gt $((stalled + (1 << 20))) ]; then
        flowing_ms=$((t - moved))
        break
    fi
    sleep 0.1
done
secs() { echo "$(($1 / 1000)).$(printf %03d $(($1 % 1000)))"; }
if [ "$flowing_ms" = 0 ]; then
    pass
    echo "the bytes never stopped after the move: the file was complete $(secs $(( $(now_ms) - moved ))) s after it"
elif [ -n "$flowing_ms" ]; then
    pass
    echo "the bytes stopped $(secs "$stall_ms") s after the move (at $stalled bytes, $((stalled * 100 / SIZE)) %)" \
        "and flowed again $(secs "$flowing_ms") s after it; h2's link is then to $(link_remote h2)," \
        "h1's DHT public addresses $(p h1 status --json 2>/dev/null | jget /dev/stdin "['dht']['public_addresses']")"
else
    fail "the 128 MiB file did not get going again within $RECOVER_MAX s of nat1's address change" \
        "(stopped $( [ -n "$stall_ms" ] && secs "$stall_ms" || echo '?') s after it at ${stalled:-$last} bytes;" \
        "state at h2 '$(field h2 "$MOVE_ID" state)'; h2's link: '$(link_remote h2)')"
fi
# How the link went, from the daemons' logs: what each said about links after the move.
for h in h1 h2; do
    echo "  $h's log about links and transfers after the move:"
    awk -v n="${log_at_move[$h]}" 'NR > n' "$WORK/$h/daemon.log" |
        grep -iE "link|connect|closed|timeout|transfer" | head -8 | sed 's/^/  | /'
done
# Why it took that long: a link lost to the idle timeout means nothing noticed the dead path
# sooner, and the re-dial waited for it. PARLEY_NETLAB_RECOVER_WITHIN=SECONDS makes a slower
# recovery a failure (for the day a dead path is noticed and re-dialled early).
idle_lost=""
for h in h1 h2; do
    awk -v n="${log_at_move[$h]}" 'NR > n' "$WORK/$h/daemon.log" | grep -q "lost (idle timeout" && idle_lost+=" $h"
done
if [ -n "$flowing_ms" ] && [ "$flowing_ms" -gt 0 ]; then
    if [ -n "$idle_lost" ]; then
        echo "NOTE: the bytes flowed again only after the QUIC idle timeout closed the dead connection (at$idle_lost;" \
            "$(secs "$flowing_ms") s; TransportConfig::idleTimeout is 30 s): until then both sides held it as their" \
            "link (links.connected), so nothing re-dialled; the re-dial itself then took well under a second"
    fi
    if [ -n "${PARLEY_NETLAB_RECOVER_WITHIN:-}" ] && [ "$flowing_ms" -gt $((PARLEY_NETLAB_RECOVER_WITHIN * 1000)) ]; then
        fail "the transfer got going again $(secs "$flowing_ms") s after the move, more than PARLEY_NETLAB_RECOVER_WITHIN=$PARLEY_NETLAB_RECOVER_WITHIN s"
    fi
fi
if [ -n "$flowing_ms" ]; then
    if wait_until 120 has_state h2 "$MOVE_ID" completed; then pass; else
        fail "the 128 MiB file did not complete after the move (state '$(field h2 "$MOVE_ID" state)')"; fi
    done_ms=$(( $(now_ms) - moved ))
    echo "the 128 MiB file completed $((done_ms / 1000)) s after the move"
    same "sha256 of the 128 MiB file after the move" "$SUM" "$(sha256sum <"$IN/moving.bin" 2>/dev/null | cut -d' ' -f1)"
    fetched=$(( $(counter h2 chunks_fetched) - fetched0 ))
    timeouts=$(( $(counter h2 chunk_timeouts) - timeouts0 ))
    limit=$((SIZE + IN_FLIGHT * CHUNK))
    echo "fetched by h2: $fetched chunks = $((fetched * CHUNK)) bytes for a file of $SIZE bytes" \
        "($(( (fetched * CHUNK - SIZE) / CHUNK )) chunks more; limit $limit = size + $IN_FLIGHT x $CHUNK); chunk timeouts at h2: $timeouts"
    if [ $((fetched * CHUNK)) -ge $SIZE ] && [ $((fetched * CHUNK)) -le $limit ]; then pass; else
        fail "h2 fetched $((fetched * CHUNK)) bytes: not within [$SIZE, $limit]"; fi
    remote=$(link_remote h2)
    same "h2's link after the move goes to nat1's new address" "$NEW_NAT1" "${remote%:*}"
fi

down_and_check_logs "$WORK/h1" "$WORK/h2" "$WORK/pub"
finish "$((SECONDS - started)) s"
