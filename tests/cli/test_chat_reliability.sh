#!/usr/bin/env bash
# Chat reliability through the real binary (issue 5, DESIGN.md §7): no message lost, none
# duplicated, sequences intact, while the receiver's daemon is killed (SIGKILL, no goodbye)
# and restarted three times in the middle of 1,000 sends; then delivery through the DHT inbox
# when the receiver is down and the sender goes down right after sending.
# Three daemons on 127.0.0.1 with a random private network id: a seed (bootstrap and DHT
# storage that stays up), alice (A, the sender) and bob (B, the receiver).
# Usage: test_chat_reliability.sh PATH_TO_PARLEY   (CHAT_MESSAGES=N sends N instead of 1000)
set -u
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PARLEY=${1:?usage: test_chat_reliability.sh PATH_TO_PARLEY}
COUNT=${CHAT_MESSAGES:-1000}
WORK=$(mktemp -d /tmp/parley-chat.XXXXXX)
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
S="$WORK/seed"
A="$WORK/alice"
B="$WORK/bob"
started=$SECONDS

# Stops every daemon this test started, so that nothing outlives the test.
cleanup() {
    stop_daemons "$S" "$A" "$B"
    [ -n "${PARLEY_KEEP_WORK:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

# What the failure output shows about the daemons: their chat counters and last log lines.
show_daemons() {
    local p
    for p in "$A" "$B"; do
        echo "--- $(basename "$p"): chat counters"
        "$PARLEY" --profile "$p" status --json 2>/dev/null | jget /dev/stdin ".get('chat_counters')"
        echo "--- $(basename "$p"): last 40 lines of daemon.log"
        tail -40 "$p/daemon.log" 2>/dev/null
    done
}

# history PROFILE FILE: the conversation with the other side as JSON (everything of it).
history() {
    local peer=$BOB_ID
    [ "$1" = "$B" ] && peer=$ALICE_ID
    "$PARLEY" --profile "$1" history "$peer" --json --limit 100000 >"$2" 2>"$WORK/history.err"
}

# Succeeds when alice's history shows all COUNT outgoing "msg N" delivered (or read).
all_delivered() {
    history "$A" "$WORK/a.json" || return 1
    python3 - "$WORK/a.json" "$COUNT" <<'EOF'
import json, sys
msgs, count = json.load(open(sys.argv[1])), int(sys.argv[2])
done = {m["text"] for m in msgs
        if m["direction"] == "out" and m["state"] in ("delivered", "read")
        and m["text"].startswith("msg ")}
sys.exit(0 if len(done) == count else 1)
EOF
}

# Checks bob's side: every "msg 1".."msg COUNT" exactly once, incoming seqs exactly 1..COUNT,
# each once and in order in the history output, and msg N carrying seq N (alice sent them one
# after another, so her daemon numbered them in that order). Prints what is wrong.
check_received() {
    python3 - "$WORK/b.json" "$WORK/a.json" "$COUNT" <<'EOF'
import collections, json, sys
b, a, count = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
inc = [m for m in b if m["direction"] == "in" and m["text"].startswith("msg ")]
texts = collections.Counter(m["text"] for m in inc)
want = {"msg %d" % i for i in range(1, count + 1)}
missing = sorted(want - set(texts), key=lambda t: int(t[4:]))
dups = {t: n for t, n in texts.items() if n > 1}
extra = sorted(set(texts) - want)
seqs = [m["seq"] for m in inc]
seq_dups = {s: n for s, n in collections.Counter(seqs).items() if n > 1}
mismatched = [m for m in inc if m["text"] != "msg %d" % m["seq"]]
out = [m for m in a if m["direction"] == "out" and m["text"].startswith("msg ")]
undelivered = [m for m in out if m["state"] not in ("delivered", "read")]
problems = []
if missing:
    problems.append("%d missing at bob (first: %s)" % (len(missing), ", ".join(missing[:10])))
if dups:
    problems.append("%d duplicated at bob (e.g. %s)" % (len(dups), list(dups.items())[:5]))
if extra:
    problems.append("%d unexpected texts at bob: %s" % (len(extra), extra[:5]))
if seqs != list(range(1, count + 1)):
    problems.append("bob's incoming seqs are not exactly 1..%d in order: %d seqs, %d duplicated, "
                    "first out of place at index %s" % (
                        count, len(seqs), len(seq_dups),
                        next((i for i, s in enumerate(seqs) if s != i + 1), len(seqs))))
if mismatched:
    problems.append("%d messages whose text is not 'msg SEQ' (e.g. %s)" % (
        len(mismatched), [(m["seq"], m["text"]) for m in mismatched[:5]]))
if len(out) != count or undelivered:
    problems.append("alice has %d outgoing, %d of them not delivered (states: %s)" % (
        len(out), len(undelivered), dict(collections.Counter(m["state"] for m in undelivered))))
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
EOF
}

# --- set-up: three daemons, alice and bob become contacts --------------------------------------
setup_contacts "chat test" show_daemons
echo "set-up: $((SECONDS - started)) s"

# --- 1,000 messages while bob is killed three times ---------------------------------------------
# The first message waits for its delivery: the direct link is then up, and `send --wait`
# reports it. The rest are sent one process each, as fast as they return. At three points
# bob's daemon is killed without warning (so alice learns it only from the silence of the
# link) and started again after a pause of 0.2, 1.5 and 3 s, in the background so that alice
# keeps sending meanwhile: messages are then in flight, queued, or in bob's DHT inbox.
send_start=$SECONDS
if "$PARLEY" --profile "$A" send bob "msg 1" --wait --timeout 20 --json >"$WORK/first.json" 2>&1 &&
    grep -q '"delivered":true' "$WORK/first.json"; then
    pass
else
    fail "send --wait of the first message: $(cat "$WORK/first.json")"
fi
declare -A KILL_AT=([$((COUNT / 5))]=0.2 [$((COUNT * 9 / 20))]=1.5 [$((COUNT * 7 / 10))]=3)
restarter=
kills=0
send_errors=0
for i in $(seq 2 "$COUNT"); do
    if [ -n "${KILL_AT[$i]:-}" ]; then
        [ -n "$restarter" ] && { wait "$restarter" || fail "restart of bob failed"; }
        pid=$(daemon_pid "$B")
        if [ -n "$pid" ]; then
            kill -KILL "$pid"
            kills=$((kills + 1))
            # The lock is free once the process is gone; the next `up` must find it free.
            wait_until 10 flock -n "$B/daemon.lock" true || fail "bob did not die"
        else
            fail "bob is not running before kill $((kills + 1))"
        fi
        (sleep "${KILL_AT[$i]}"; start_daemon "$B") &
        restarter=$!
    fi
    # Alice's daemon queues every message at once: a send only fails on a broken daemon.
    # A sanitizer build's leak check at the exit of each of these 999 short-lived clients would
    # cost a fifth of their time; the daemons keep theirs, and the CLI's own leaks are checked
    # by every other command of the test suite.
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
        "$PARLEY" --profile "$A" send "$BOB_ID" "msg $i" >/dev/null 2>>"$WORK/send.err" ||
        send_errors=$((send_errors + 1))
done
[ -n "$restarter" ] && { wait "$restarter" || fail "restart of bob failed"; }
[ $send_errors -eq 0 ] && pass || { fail "$send_errors sends failed:"; tail -3 "$WORK/send.err"; }
[ $kills -eq 3 ] && pass || fail "bob was killed $kills times, not 3"
send_s=$((SECONDS - send_start))

# Everything must be delivered within a minute of the last send.
wait_start=$SECONDS
if wait_until 60 all_delivered; then pass; else fail "not all $COUNT messages delivered within 60 s"; fi
delivery_s=$((SECONDS - wait_start))
history "$A" "$WORK/a.json" || fail "alice's history: $(cat "$WORK/history.err")"
history "$B" "$WORK/b.json" || fail "bob's history: $(cat "$WORK/history.err")"
if check_received; then
    pass
else
    fail "the conversation at bob is not exactly msg 1..$COUNT (details above)"
    show_daemons
fi
echo "reliability: $COUNT messages sent in $send_s s with $kills kills of bob; all delivered" \
    "$delivery_s s after the last send"

# --- offline delivery through the DHT inbox -----------------------------------------------------
# Bob leaves (says goodbye); alice sends and leaves at once, so the message can only reach bob
# through his DHT inbox (stored on the seed). Bob comes back and must find it within 20 s.
# When alice comes back, bob's acknowledgement reaches her: the message becomes delivered,
# and bob still has it once.
"$PARLEY" --profile "$B" down >/dev/null 2>&1 || fail "down bob"
"$PARLEY" --profile "$A" send bob "while you were away" --json >"$WORK/offline.json" 2>&1 ||
    fail "send to an offline contact: $(cat "$WORK/offline.json")"
"$PARLEY" --profile "$A" down >/dev/null 2>&1 || fail "down alice"
start_daemon "$B" || fail "bob does not start again"
offline_in_b() {
    history "$B" "$WORK/b.json" && [ "$(count_text "$WORK/b.json" in "while you were away")" = 1 ]
}
if wait_until 20 offline_in_b; then
    pass
else
    fail "bob did not get the message sent while he was down (sender offline too) within 20 s"
    show_daemons
fi
start_daemon "$A" || fail "alice does not start again"
offline_delivered() {
    history "$A" "$WORK/a.json" &&
        [ "$(count_text "$WORK/a.json" out "while you were away" delivered read)" = 1 ]
}
if wait_until 20 offline_delivered; then
    pass
else
    fail "the offline message is not 'delivered' at alice 20 s after both are back"
    grep -o '{[^}]*"text":"while you were away"[^}]*}' "$WORK/a.json"
    show_daemons
fi
if history "$B" "$WORK/b.json" && [ "$(count_text "$WORK/b.json" in "while you were away")" = 1 ]; then
    pass
else
    fail "bob has the offline message more than once after alice's return"
fi

# Stop the daemons here rather than in cleanup, so that what a sanitizer build reports at exit
# (into daemon.log) is seen.
down_and_check_logs "$A" "$B" "$S"
summary "chat reliability" "$((SECONDS - started)) s"
