# shellcheck shell=bash
# Helpers shared by the CLI shell tests (tests/cli/test_*.sh), which source this file with
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It offers: pass/fail counters and the summary line; skipping (exit 77); polling with a
# deadline; reading JSON; finding and stopping daemons, and the sanitizer check of their logs;
# the chat tests' three daemons (seed, alice, bob) made contacts, and counting messages in a
# history; the NAT lab (on, removing stale labs, the udp.py tool).
# Sourcing it sets passes=0, failures=0 and NETLAB (contrib/netlab/netlab.sh); the rest are
# functions. Those for daemons use the test's PARLEY and WORK, the chat ones also NET and the
# profiles S (seed), A (alice) and B (bob); those for the lab use NETLAB and PREFIX.
# shellcheck disable=SC2154 # PARLEY, WORK, NET, S, A, B and PREFIX are the sourcing test's

# --- results -----------------------------------------------------------------------------------
passes=0
failures=0
# pass: counts a check that held.
pass() { passes=$((passes + 1)); }
# fail MESSAGE: counts a check that did not hold and prints "FAIL: MESSAGE".
fail() { failures=$((failures + 1)); echo "FAIL: $*"; }
# summary NAME [DETAIL]: prints "NAME: P passed, F failed (DETAIL)"; true when nothing failed.
# check "description" EXPECTED_EXIT COMMAND...: runs it, output in $WORK/out and $WORK/err.
check() {
    local what=$1 want=$2
    shift 2
    "$@" >"$WORK/out" 2>"$WORK/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then
        pass
    else
        fail "$what: exit $got, expected $want"
        sed 's/^/  stdout: /' "$WORK/out" | head -8
        sed 's/^/  stderr: /' "$WORK/err" | head -8
    fi
}

summary() {
    echo "$1: $passes passed, $failures failed${2:+ ($2)}"
    [ "$failures" -eq 0 ]
}

# --- preconditions -----------------------------------------------------------------------------
# skip REASON: prints "skipped: REASON" and exits 77 (the tests' SKIP_RETURN_CODE in CTest).
skip() {
    echo "skipped: $*"
    exit 77
}
# skip_unless_root REASON TOOL...: skips unless running as root with every TOOL on the PATH.
skip_unless_root() {
    local reason=$1 tool
    shift
    [ "$(id -u)" -eq 0 ] || skip "$reason"
    for tool; do command -v "$tool" >/dev/null || skip "$reason"; done
}
# add_netns_or_skip NAME: creates network namespace NAME, or skips when that is not possible.
add_netns_or_skip() {
    ip netns add "$1" 2>/dev/null || skip "cannot create a network namespace here"
}

# --- waiting and JSON --------------------------------------------------------------------------
# wait_until SECONDS COMMAND...: polls (quietly) until the command succeeds; false at the deadline.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.2
    done
}
# jget FILE EXPR: prints the JSON in FILE indexed by EXPR (e.g. "['dht']['port']"), or nothing.
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d'+sys.argv[2]))" "$@" 2>/dev/null; }
# jget_text TEXT EXPR: the same for JSON given as text.
jget_text() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval('d'+sys.argv[2]))" "$@" 2>/dev/null; }

# --- daemons -----------------------------------------------------------------------------------
# daemon_pid PROFILE: the pid of its running daemon, or nothing: daemon.lock holds the pid, and
# the daemon holds a lock on it while it runs (a killed daemon's file stays behind).
daemon_pid() {
    local pid
    pid=$(cat "$1/daemon.lock" 2>/dev/null) || return 0
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ! flock -n "$1/daemon.lock" true && echo "$pid"
}
# stop_daemons PROFILE...: `down` for the daemons that answer, SIGKILL (by the pid in their
# daemon.lock) for any that do not, so that nothing outlives the test.
stop_daemons() {
    local p pid
    for p; do
        [ -S "$p/control.sock" ] && "$PARLEY" --profile "$p" down --timeout 5 >/dev/null 2>&1
        pid=$(daemon_pid "$p")
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    done
    return 0
}
# down_and_check_logs PROFILE...: stops each daemon (fail if it does not go down), then fails
# if a sanitizer wrote into one of their daemon.logs. Done at the end of a test rather than in
# its cleanup, so that what a sanitizer build reports at exit is seen.
down_and_check_logs() {
    local p logs=()
    for p; do
        "$PARLEY" --profile "$p" down --timeout 20 >/dev/null 2>&1 || fail "down $(basename "$p")"
        logs+=("$p/daemon.log")
    done
    if grep -l "AddressSanitizer\|LeakSanitizer\|runtime error:" "${logs[@]}"; then
        fail "a sanitizer reported errors in the daemon logs above"
    else
        pass
    fi
}

# --- the chat tests: seed S, alice A and bob B on 127.0.0.1 ----------------------------------
# start_daemon PROFILE: starts its daemon with the flags every start of it uses (a restart must
# look the same as the first start: same bind address, network and bootstrap, the seed for all
# but the seed; the port is the profile's last one). Output goes to $WORK/up.log.
start_daemon() {
    local boot=()
    [ "$1" != "$S" ] && boot=(--bootstrap "127.0.0.1:$SEED_PORT")
    "$PARLEY" --profile "$1" up --bind 127.0.0.1 --network "$NET" "${boot[@]}" --timeout 30 \
        >>"$WORK/up.log" 2>&1
}
# setup_contacts MESSAGE [DIAGNOSE]: inits and starts seed, alice and bob, and makes alice and
# bob contacts (alice asks with MESSAGE, bob accepts); sets ALICE_ID, BOB_ID and SEED_PORT.
# On a failure: "FAIL: ...", the command DIAGNOSE where the daemons run, and exit 1.
setup_contacts() {
    local message=$1 diagnose=${2:-true} p
    for p in "$S" "$A" "$B"; do
        "$PARLEY" --profile "$p" init --name "$(basename "$p")" --key-bits 2048 >"$p.id" 2>/dev/null ||
            { echo "FAIL: init $(basename "$p")"; exit 1; }
    done
    ALICE_ID=$(cat "$A.id")
    BOB_ID=$(cat "$B.id")
    SEED_PORT=
    start_daemon "$S" || { echo "FAIL: seed does not start"; cat "$WORK/up.log"; exit 1; }
    SEED_PORT=$("$PARLEY" --profile "$S" status --json | jget /dev/stdin "['dht']['port']")
    start_daemon "$A" && start_daemon "$B" ||
        { echo "FAIL: alice or bob does not start"; cat "$WORK/up.log"; exit 1; }
    # Alice must find bob's card before she can encrypt a request to him.
    wait_until 30 bash -c "'$PARLEY' --profile '$A' lookup $BOB_ID --timeout 3 --json | grep -q '\"state\":\"online\"'" ||
        { echo "FAIL: alice cannot find bob"; $diagnose; exit 1; }
    "$PARLEY" --profile "$A" contact add "$BOB_ID" --alias bob --message "$message" >/dev/null ||
        { echo "FAIL: contact add"; exit 1; }
    wait_until 30 bash -c "'$PARLEY' --profile '$B' contact requests --json | grep -q $ALICE_ID" ||
        { echo "FAIL: bob never saw alice's request"; $diagnose; exit 1; }
    "$PARLEY" --profile "$B" contact accept "$ALICE_ID" >/dev/null ||
        { echo "FAIL: accept"; exit 1; }
    wait_until 30 bash -c "'$PARLEY' --profile '$A' contacts --json | grep -q '\"state\":\"accepted\"'" ||
        { echo "FAIL: alice never saw the acceptance"; $diagnose; exit 1; }
}
# count_text FILE DIRECTION TEXT [STATE...]: how many messages of a history (`history --json`
# in FILE) have that direction and text (and one of those states).
count_text() {
    python3 - "$@" <<'EOF'
import json, sys
msgs, direction, text, states = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4:]
print(sum(1 for m in msgs if m["direction"] == direction and m["text"] == text
          and (not states or m["state"] in states)))
EOF
}

# --- the NAT lab (contrib/netlab/netlab.sh) ----------------------------------------------------
NETLAB="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/contrib/netlab/netlab.sh"
# on HOST COMMAND...: runs the command on that host of the lab $PREFIX.
on() {
    local h=$1
    shift
    "$NETLAB" exec --prefix "$PREFIX" "$h" "$@"
}
# remove_stale_labs TAG [PATTERN]: removes the labs "TAG<pid>PATTERN" of earlier runs killed
# outright (SIGKILL on a CTest timeout, no cleanup) whose shell, the pid, is gone.
remove_stale_labs() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | grep -oE "^$1[0-9]+${2:-}-wan" | sed 's/-wan$//'); do
        pid=${ns#"$1"}
        kill -0 "${pid%%-*}" 2>/dev/null ||
            NETLAB_STATE_DIR=/nonexistent "$NETLAB" down --prefix "$ns" >/dev/null 2>&1
    done
}
# write_udp_py FILE: writes the UDP tool the lab tests run on the hosts (usage in its header).
write_udp_py() {
    cat >"$1" <<'EOF'
# udp.py echo PORT SECONDS: answer every datagram with the address it came from.
# udp.py probe IP PORT: print the answer's text, exit 1 if none within a second.
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if sys.argv[1] == "echo":
    s.bind(("0.0.0.0", int(sys.argv[2])))
    s.settimeout(float(sys.argv[3]))
    try:
        while True:
            d, a = s.recvfrom(100)
            s.sendto(f"{a[0]}:{a[1]}".encode(), a)
    except OSError:
        pass
else:
    s.settimeout(0.25)
    for _ in range(4):
        try:
            s.sendto(b"x", (sys.argv[2], int(sys.argv[3])))
            print(s.recvfrom(100)[0].decode())
            sys.exit(0)
        except OSError:
            pass
    sys.exit(1)
EOF
}
