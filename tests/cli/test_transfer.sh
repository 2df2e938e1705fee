#!/usr/bin/env bash
# File transfers (issue 13) with the real `parley` binary, checked with tools nobody here wrote
# (diff -r, stat, sha256sum, tmux):
#   1. a folder tree (nested and empty folders, a 0-byte file, a 40 MiB file, 2,000 small
#      files, names in several scripts and with spaces) shared twice: once into bob's
#      auto-accept folder, once accepted by hand with `transfer accept PREFIX --to DIR --wait`;
#      the copies are identical, with the same modes and modification times;
#   2. a 500 MiB file that survives kill -9 of the receiver (three times) and of the sender
#      (once), at random points, and fetches little more than its size (the figure is printed);
#   3. refusals with their messages and exit codes; a symbolic link and a FIFO in a shared
#      folder reported as skipped and not sent;
#   4. `share --wait` in a real terminal (tmux): the progress line updates, a "completed:" line
#      ends it;
#   5. `transfers --json` on both sides lists what happened, with direction out and in.
# Daemons on 127.0.0.1 with a random private network id; tmux on a private socket (-L); the
# terminal part is skipped without tmux (the rest still runs).
# Usage: test_transfer.sh PATH_TO_PARLEY
set -u
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PARLEY=${1:?usage: test_transfer.sh PATH_TO_PARLEY}
WORK=$(mktemp -d /tmp/parley-transfer.XXXXXX)
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
SOCKET="parley-transfer-$$"
S="$WORK/seed"
A="$WORK/alice"
B="$WORK/bob"
DATA="$WORK/data"
TREE="$DATA/tree"
# The chunk size the daemon picks for files below 128 Ki chunks of it, and the receiver's
# requests in flight (node/transfer/manifest.h, receive_core.h).
IN_FLIGHT=16
export LC_ALL=C.UTF-8
started=$SECONDS

cleanup() {
    local p pid
    if command -v tmux >/dev/null; then
        tmux -L "$SOCKET" kill-server 2>/dev/null
        rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$SOCKET"
    fi
    # A daemon stopped (SIGSTOP) by the resume part must be able to hear `down`.
    for p in "$S" "$A" "$B"; do
        pid=$(daemon_pid "$p")
        [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null
    done
    stop_daemons "$S" "$A" "$B"
    rm -rf "$WORK"
}
trap cleanup EXIT

# expect_in "description" FILE PATTERN (extended regex)
expect_in() {
    if grep -qE -- "$3" "$2"; then
        pass
    else
        fail "$1: '$3' not in:"
        head -8 "$2" | sed 's/^/  /'
    fi
}
# same "description" A B: the two strings are equal.
same() {
    if [ "$2" = "$3" ]; then pass; else fail "$1: '$2' != '$3'"; fi
}

pa() { "$PARLEY" --profile "$A" "$@"; }
pb_() { "$PARLEY" --profile "$B" "$@"; }

# field PROFILE ID KEY: that transfer's KEY in `transfers --json` (nothing if not listed).
field() {
    "$PARLEY" --profile "$1" transfers --json 2>/dev/null | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["id"] == sys.argv[1]:
        print(t[sys.argv[2]])' "$2" "$3"
}
has_state() { [ "$(field "$1" "$2" state)" = "$3" ]; }
# done_over PROFILE ID PERCENT: more than PERCENT of the transfer is done there.
done_over() {
    "$PARLEY" --profile "$1" transfers --json 2>/dev/null | python3 -c '
import json, sys
t = [t for t in json.load(sys.stdin) if t["id"] == sys.argv[1]]
sys.exit(0 if t and t[0]["bytes"] and t[0]["done"] * 100 > int(sys.argv[2]) * t[0]["bytes"] else 1)' "$2" "$3"
}
# counters PROFILE NAME...: transfer_counters.NAME... of the running daemon, on one line (0
# when absent).
counters() {
    "$PARLEY" --profile "$1" status --json 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin).get("transfer_counters", {})
print(*[c.get(n, 0) for n in sys.argv[1:]])' "${@:2}"
}
# offered_to PROFILE ID: the offer with that id has reached PROFILE.
offered_to() { has_state "$1" "$2" offered; }
# wait_state "description" PROFILE ID STATE [SECONDS]
wait_state() {
    if wait_until "${5:-60}" has_state "$2" "$3" "$4"; then
        pass
    else
        fail "$1: not $4 at $(basename "$2") (state '$(field "$2" "$3" state)', reason '$(field "$2" "$3" reason)')"
        return 1
    fi
}
log_tail() { # log_tail PROFILE: the last lines of its daemon.log about transfers
    echo "  --- $(basename "$1")/daemon.log (transfer lines, last 15):"
    grep -i "transfer\|chunk\|offer" "$1/daemon.log" | tail -15 | sed 's/^/  | /'
}

# --- set-up: seed, alice and bob; alice and bob are contacts -----------------------------------
setup_contacts "transfer test"
echo "daemons up and contacts after $((SECONDS - started)) s"

# --- the data ----------------------------------------------------------------------------------
mkdir -p "$TREE/a/b/c" "$TREE/empty" "$TREE/Grüße" "$TREE/日本語/深い" "$TREE/Ελληνικά" \
    "$TREE/with spaces/and more"
: >"$TREE/zero bytes"
head -c $((40 << 20)) /dev/urandom >"$TREE/big.bin"
echo "deep" >"$TREE/a/b/c/deep.txt"
echo "hallo" >"$TREE/Grüße/Straße.txt"
echo "こんにちは" >"$TREE/日本語/深い/ファイル.txt"
echo "γειά" >"$TREE/Ελληνικά/αρχείο.txt"
echo "spaces" >"$TREE/with spaces/and more/a file with spaces.txt"
printf '#!/bin/sh\necho hi\n' >"$TREE/a/run.sh"
python3 - "$TREE/small" <<'EOF'
import os, sys
root = sys.argv[1]
for i in range(2000):
    d = os.path.join(root, "d%02d" % (i % 40))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%04d.txt" % i), "wb") as f:
        f.write(os.urandom(i % 3000))
EOF
chmod 755 "$TREE/a/run.sh"
chmod 600 "$TREE/Grüße/Straße.txt"
chmod 700 "$TREE/a/b"
chmod 750 "$TREE/日本語"
# Times in the past, folders last (writing into a folder changes its time).
touch -d '2001-02-03 04:05:06' "$TREE/big.bin" "$TREE/zero bytes" "$TREE/Grüße/Straße.txt" \
    "$TREE/日本語/深い/ファイル.txt" "$TREE/small/d07/f0007.txt"
touch -d '2010-10-10 10:10:10' "$TREE/a/b/c" "$TREE/a/b" "$TREE/empty" "$TREE/日本語/深い" \
    "$TREE/日本語" "$TREE/with spaces"
BIG_SUM=$(sha256sum <"$TREE/big.bin" | cut -d' ' -f1)
# The entries whose mode and time are compared.
STAT_PATHS=("big.bin" "zero bytes" "a/run.sh" "Grüße/Straße.txt" "日本語/深い/ファイル.txt"
    "small/d07/f0007.txt" "a/b" "a/b/c" "empty" "日本語" "日本語/深い" "with spaces")

# compare_tree "description" COPY: COPY is identical to $TREE (contents, modes, times).
compare_tree() {
    local what=$1 copy=$2 rel
    if diff -r "$TREE" "$copy" >"$WORK/diff" 2>&1; then
        pass
    else
        fail "$what: diff -r differs"
        head -10 "$WORK/diff" | sed 's/^/  /'
    fi
    for rel in "${STAT_PATHS[@]}"; do
        same "$what: stat '%a %Y' of $rel" "$(stat -c '%a %Y' "$TREE/$rel" 2>&1)" \
            "$(stat -c '%a %Y' "$copy/$rel" 2>&1)"
    done
    same "$what: sha256 of big.bin" "$BIG_SUM" "$(sha256sum <"$copy/big.bin" | cut -d' ' -f1)"
    same "$what: the empty folder" "directory" "$(stat -c %F "$copy/empty" 2>&1)"
    same "$what: the 0-byte file" "regular empty file" "$(stat -c %F "$copy/zero bytes" 2>&1)"
}

# --- 1a. into bob's auto-accept folder: `share --wait` ---------------------------------------
check "contact set --auto-accept" 0 pb_ contact set alice --auto-accept "$WORK/auto"
t0=$SECONDS
check "share TREE --wait, auto-accepted" 0 pa share bob "$TREE" --wait
AUTO_ID=$(head -1 "$WORK/out")
expect_in "share --wait ends with a summary" "$WORK/out" "^completed: tree, 2008 files, "
echo "tree of 2,008 files ($(du -sh "$TREE" | cut -f1)), auto-accepted: $((SECONDS - t0)) s"
wait_state "auto-accepted tree" "$B" "$AUTO_ID" completed 30 && compare_tree "auto-accepted" "$WORK/auto/tree"

# --- 3 (part). a symbolic link and a FIFO in a shared folder are skipped -----------------------
mkdir -p "$DATA/odd/inner"
echo "plain" >"$DATA/odd/plain.txt"
ln -s plain.txt "$DATA/odd/link"
ln -s /etc "$DATA/odd/inner/dirlink"
mkfifo "$DATA/odd/inner/pipe"
check "share a folder with a symlink and a FIFO" 0 pa share bob "$DATA/odd" --wait
ODD_ID=$(head -1 "$WORK/out")
expect_in "the symlink is reported as skipped" "$WORK/err" "skipped .*odd/link: "
expect_in "the folder symlink is reported as skipped" "$WORK/err" "skipped .*odd/inner/dirlink: "
expect_in "the FIFO is reported as skipped" "$WORK/err" "skipped .*odd/inner/pipe: "
sed 's/^/  stderr: /' "$WORK/err" | head -3
if wait_until 20 has_state "$B" "$ODD_ID" completed && [ -f "$WORK/auto/odd/plain.txt" ] &&
    [ -d "$WORK/auto/odd/inner" ]; then pass; else fail "the folder with skipped entries did not arrive"; fi
for rel in link inner/dirlink inner/pipe; do
    if [ -e "$WORK/auto/odd/$rel" ] || [ -L "$WORK/auto/odd/$rel" ]; then
        fail "skipped $rel arrived anyway"
    else
        pass
    fi
done

# --- 1b. accepted by hand: `transfer accept PREFIX --to DIR --wait` --------------------------
check "contact set --no-auto-accept" 0 pb_ contact set alice --no-auto-accept
check "share TREE (no wait)" 0 pa share bob "$TREE"
MANUAL_ID=$(head -1 "$WORK/out")
if wait_until 30 offered_to "$B" "$MANUAL_ID"; then pass; else fail "bob never saw the offer"; log_tail "$B"; fi
t0=$SECONDS
check "transfer accept PREFIX --to --wait" 0 pb_ transfer accept "${MANUAL_ID:0:8}" --to "$WORK/manual" --wait
expect_in "accept says where" "$WORK/out" "^Accepted: tree into $WORK/manual\$"
expect_in "accept --wait ends with a summary" "$WORK/out" "^completed: tree, 2008 files, "
echo "tree accepted by hand: $((SECONDS - t0)) s"
wait_state "alice's side of the accepted tree" "$A" "$MANUAL_ID" completed 20
compare_tree "accepted by hand" "$WORK/manual/tree"

# --- 3. refusals ---------------------------------------------------------------------------
check "share of a path that does not exist" 2 pa share bob /nonexistent
expect_in "share /nonexistent says why" "$WORK/err" "^parley: /nonexistent: no such file or folder$"
"$PARLEY" --profile "$WORK/carol" init --name carol --key-bits 2048 >"$WORK/carol.id" 2>/dev/null ||
    fail "init carol"
CAROL_ID=$(cat "$WORK/carol.id")
check "share to a stranger" 1 pa share "$CAROL_ID" "$TREE/a/run.sh"
expect_in "share to a stranger says why" "$WORK/err" "^parley: ${CAROL_ID:0:8}.* is not an accepted contact"
check "share to a name nobody has" 2 pa share carol "$TREE/a/run.sh"
expect_in "share to an unknown name says why" "$WORK/err" "'carol' is neither a contact id nor"
check "transfer accept zzzz" 2 pb_ transfer accept zzzz
expect_in "accept zzzz says why" "$WORK/err" "'zzzz' is not a transfer id"
# A declined offer: the sender's `share --wait` ends with exit 1, accepting it later fails.
pa share bob "$TREE/a/b/c/deep.txt" --wait >"$WORK/declined.out" 2>"$WORK/declined.err" &
share_pid=$!
wait_until 20 test -s "$WORK/declined.out" || fail "share for the decline printed no id"
DECLINED_ID=$(head -1 "$WORK/declined.out")
if wait_until 30 offered_to "$B" "$DECLINED_ID"; then pass; else fail "bob never saw the offer to decline"; fi
check "transfer decline" 0 pb_ transfer decline "${DECLINED_ID:0:10}"
expect_in "decline says what" "$WORK/out" "^Declined: deep.txt$"
wait "$share_pid"
same "share --wait of a declined offer exits 1" 1 $?
expect_in "share --wait of a declined offer says so" "$WORK/declined.err" "^parley: deep.txt: declined"
check "accept of a declined offer" 1 pb_ transfer accept "${DECLINED_ID:0:10}" --to "$WORK/late"
sed 's/^/  stderr: /' "$WORK/err" | head -2
expect_in "accept of a declined offer says why" "$WORK/err" "^parley: .*[a-z]"
if [ -e "$WORK/late/deep.txt" ]; then fail "a declined file arrived"; else pass; fi
wait_state "the sender sees the decline" "$A" "$DECLINED_ID" declined 10

# --- 4. `share --wait` in a terminal ------------------------------------------------------------
TTY_ID=
if command -v tmux >/dev/null; then
    t() { tmux -L "$SOCKET" "$@"; }
    pane() { t capture-pane -p -J -t share; }
    pane_has() { pane | grep -qE -- "$1"; }
    pane_dump() { echo "  --- pane:"; pane | sed '/^$/d; s/^/  | /'; }
    cmd="'$PARLEY' --profile '$A' share bob '$TREE/big.bin' --wait; echo \"share exited \$?\""
    t -f /dev/null new-session -d -s parley -n share -x 120 -y 30 "$cmd"
    t set-option -w -t share remain-on-exit on
    t pipe-pane -t share -o "cat >>'$WORK/tty.raw'"
    # Offered, not yet accepted: the line shows 0% and the state.
    if wait_until 20 pane_has '^big\.bin +0% +0 B / 40\.0 MiB +\[offered\]'; then pass; else
        fail "no progress line while offered"; pane_dump; fi
    TTY_ID=$(pane | grep -oE '^[0-9a-f]{32}$' | head -1)
    if [ -n "$TTY_ID" ]; then pass; else fail "the pane shows no transfer id"; pane_dump; fi
    pb_ transfer accept "$TTY_ID" --to "$WORK/tty" >/dev/null || fail "accept of the terminal transfer"
    # While it moves: a percentage and a rate on the one line. Looked for in every frame the
    # terminal got (40 MiB may be done between two looks at the pane).
    drawn_has() { tr '\r' '\n' <"$WORK/tty.raw" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' | grep -qaE -- "$1"; }
    if wait_until 30 drawn_has '^big\.bin +[0-9]+% .* MiB/s .*\[transferring\]'; then pass; else
        fail "no percentage and rate while transferring"; pane_dump; fi
    if wait_until 60 pane_has '^share exited'; then
        if pane_has '^share exited 0$'; then pass; else fail "share --wait in a terminal did not exit 0"; pane_dump; fi
        if pane_has '^completed: big\.bin, 1 file, 40\.0 MiB in [0-9.]+ s \([0-9.]+ [KMG]iB/s\)$'; then pass; else
            fail "no 'completed:' summary line"; pane_dump; fi
        # The progress line was rewritten in place (\r), several times, and erased at the end.
        updates=$(tr '\r' '\n' <"$WORK/tty.raw" | grep -cE '^big\.bin +[0-9]+%')
        distinct=$(tr '\r' '\n' <"$WORK/tty.raw" | grep -oE '^big\.bin +[0-9]+%' | sort -u | wc -l)
        if [ "$distinct" -ge 3 ]; then pass; else
            fail "the progress line did not update ($updates draws, $distinct percentages)"; fi
        if pane_has '%'; then fail "a progress line is left on the screen"; pane_dump; else pass; fi
        echo "terminal: $updates redraws of the progress line, $distinct different percentages"
    else
        fail "share --wait in a terminal did not end"
        pane_dump
    fi
    same "sha256 of the file sent in a terminal" "$BIG_SUM" "$(sha256sum <"$WORK/tty/big.bin" 2>/dev/null | cut -d' ' -f1)"
else
    echo "terminal part skipped: no tmux (contrib/install-deps.sh installs it)"
fi

# --- 2. resume after kill -9 ------------------------------------------------------------------
# 500 MiB: chunks of 256 KiB (node/transfer/manifest.cpp, chooseChunkSize: at most 2,048 a file).
SIZE=$((500 << 20))
CHUNK=$((256 * 1024))
head -c "$SIZE" /dev/urandom >"$DATA/big500.bin"
SUM500=$(sha256sum <"$DATA/big500.bin" | cut -d' ' -f1)
check "share the 500 MiB file" 0 pa share bob "$DATA/big500.bin"
RESUME_ID=$(head -1 "$WORK/out")
wait_until 30 offered_to "$B" "$RESUME_ID" || fail "bob never saw the 500 MiB offer"
# The counters count since the daemon started, the earlier transfers included: those are
# taken off the first run of each.
# Summed over the runs: bob's chunks verified (fetched), requests sent and chunk timeouts;
# alice's bytes and chunk requests served.
BOB_COUNTERS=(chunks_fetched chunk_requests_sent chunk_timeouts)
ALICE_COUNTERS=(bytes_served chunk_requests_received)
fetched=0 requested=0 timeouts=0 served=0 served_requests=0
# add_counters PROFILE SIGN: adds (SIGN 1) or takes off (-1) the counters of PROFILE's run.
add_counters() {
    local a b c
    if [ "$1" = "$B" ]; then
        read -r a b c < <(counters "$B" "${BOB_COUNTERS[@]}")
        fetched=$((fetched + $2 * a)) requested=$((requested + $2 * b)) timeouts=$((timeouts + $2 * c))
        got_f=$a
    else
        read -r a b < <(counters "$A" "${ALICE_COUNTERS[@]}")
        served=$((served + $2 * a)) served_requests=$((served_requests + $2 * b))
        got_s=$a
    fi
}
got_f='' got_s=''
add_counters "$B" -1
add_counters "$A" -1
kills=0
last_pct=0
check "accept the 500 MiB file" 0 pb_ transfer accept "${RESUME_ID:0:12}" --to "$WORK/resume"
t0=$SECONDS
# part_over PERCENT: bob's partial file holds more than PERCENT of the file. Read with stat (its
# allocated blocks: chunks are written in place into a sparse file), as an ASan `parley
# transfers --json` costs about 0.4 s here, in which 10-15% of this file goes by.
part_over() {
    local part
    part=$(find "$WORK/resume" -maxdepth 1 -name '.big500.bin.*.parley-part' 2>/dev/null | head -1)
    [ -n "$part" ] && [ $(( $(stat -c '%b * %B' "$part") * 100 )) -gt $(($1 * SIZE)) ]
}
# wait_part PERCENT: polls part_over every 50 ms; false if the file is complete or 90 s pass.
wait_part() {
    local deadline=$((SECONDS + 90))
    until part_over "$1"; do
        [ -e "$WORK/resume/big500.bin" ] || [ $SECONDS -ge $deadline ] && return 1
        sleep 0.05
    done
}
# kill_at PROFILE PERCENT: once more than PERCENT of the file is at bob, kill -9 PROFILE's
# daemon and start it again. The other daemon is stopped (SIGSTOP) while the counters of the
# one to be killed are read and it is killed, so that (almost) nothing moves unseen meanwhile.
kill_at() {
    local victim=$1 other=$A pct=$2 vpid opid got_done
    [ "$victim" = "$A" ] && other=$B
    if ! wait_part "$pct"; then
        fail "no kill -9 of $(basename "$victim"): the file never passed $pct% at bob while" \
            "being received (state '$(field "$B" "$RESUME_ID" state)')"
        return 1
    fi
    vpid=$(daemon_pid "$victim")
    opid=$(daemon_pid "$other")
    kill -STOP "$opid"
    got_done=$(field "$victim" "$RESUME_ID" "done")
    got_f='' got_s=''
    add_counters "$victim" 1
    kill -KILL "$vpid"
    kill -CONT "$opid"
    kills=$((kills + 1))
    last_pct=$((${got_done:-0} * 100 / SIZE))
    wait_until 10 bash -c "! kill -0 $vpid" || fail "kill -9 of $(basename "$victim") did not end it"
    echo "kill -9 $(basename "$victim") at ${last_pct}% done (as it said) after $((SECONDS - t0)) s" \
        "(counter of its run: ${got_f:+$got_f chunks fetched}${got_s:+$got_s bytes served})"
    if [ -e "$WORK/resume/big500.bin" ]; then fail "the kill -9 came after the file was complete"; else pass; fi
    if start_daemon "$victim"; then pass; else fail "$(basename "$victim") does not start again"; tail -5 "$WORK/up.log"; fi
}
# At random points: each mark drawn from its own range, and at least 12 points after the kill
# before (what was done when it came).
next_mark() { # next_mark LOW SPREAD
    local m=$(($1 + RANDOM % $2)) floor=$((last_pct + 12))
    [ "$m" -lt "$floor" ] && m=$floor
    [ "$m" -gt 88 ] && m=88
    echo "$m"
}
kill_at "$B" "$(next_mark 5 15)"
kill_at "$B" "$(next_mark 25 15)"
kill_at "$A" "$(next_mark 45 15)"
kill_at "$B" "$(next_mark 65 15)"
if wait_state "the 500 MiB file after four kill -9" "$B" "$RESUME_ID" completed 120; then
    echo "500 MiB with four kill -9: completed after $((SECONDS - t0)) s"
else
    log_tail "$A"; log_tail "$B"
fi
wait_state "alice's side of the 500 MiB file" "$A" "$RESUME_ID" completed 20
same "sha256 of the 500 MiB file after the kills" "$SUM500" "$(sha256sum <"$WORK/resume/big500.bin" 2>/dev/null | cut -d' ' -f1)"
add_counters "$B" 1
add_counters "$A" 1
limit=$((SIZE + kills * IN_FLIGHT * CHUNK))
echo "fetched by bob: $fetched chunks = $((fetched * CHUNK)) bytes for a file of $SIZE bytes" \
    "($(( (fetched * CHUNK - SIZE) / CHUNK )) chunks more; limit $limit = size + $kills kills x $IN_FLIGHT x $CHUNK);" \
    "requests sent by bob: $requested, chunk timeouts at bob: $timeouts;" \
    "served by alice: $served bytes in $served_requests chunks"
# At most the file and what was in flight at each kill; at least the file less what may have
# been verified between reading a counter and the kill (the sender stopped, what was already
# on its way).
floor=$((SIZE - kills * IN_FLIGHT * CHUNK))
if [ $((fetched * CHUNK)) -le "$limit" ] && [ $((fetched * CHUNK)) -ge "$floor" ]; then pass; else
    fail "bob fetched $((fetched * CHUNK)) bytes: not within [$floor, $limit]"; fi
leftover=$(find "$WORK/resume" -mindepth 1 ! -name big500.bin)
if [ -z "$leftover" ]; then pass; else fail "more than the file in the folder: $leftover"; fi

# --- 5. `transfers --json` on both sides -------------------------------------------------------
# expect_listed PROFILE DIRECTION ID STATE...
expect_listed() {
    local p=$1 dir=$2 id=$3 want=$4 got
    got="$(field "$p" "$id" direction) $(field "$p" "$id" state)"
    same "transfers --json at $(basename "$p"): $id" "$dir $want" "$got"
}
for id in "$AUTO_ID" "$ODD_ID" "$MANUAL_ID" "$RESUME_ID" ${TTY_ID:+"$TTY_ID"}; do
    expect_listed "$A" out "$id" completed
    expect_listed "$B" in "$id" completed
done
expect_listed "$A" out "$DECLINED_ID" declined
expect_listed "$B" in "$DECLINED_ID" declined
same "bob's auto-accepted tree went to the auto-accept folder" "$WORK/auto" "$(field "$B" "$AUTO_ID" dest)"
same "bob's accepted tree went to --to" "$WORK/manual" "$(field "$B" "$MANUAL_ID" dest)"
pa transfers >"$WORK/table" 2>&1
expect_in "alice's table shows the 500 MiB file sent" "$WORK/table" "^${RESUME_ID:0:8} +→ +bob +big500\.bin +1 +500\.0 MiB +completed +100%"

down_and_check_logs "$A" "$B" "$S"
summary "transfer cli" "$((SECONDS - started)) s"
