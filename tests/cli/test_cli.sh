#!/usr/bin/env bash
# The real `parley` binary, driven as a person would: init, id, up, status, lookup, down,
# passphrases right and wrong, a second init, bad arguments and their exit codes.
# Everything stays on 127.0.0.1 with a random private network id.
set -u
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PARLEY=${1:?usage: test_cli.sh PATH_TO_PARLEY}
WORK=$(mktemp -d /tmp/parley-cli.XXXXXX)
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))

cleanup() {
    stop_daemons "$WORK"/*/
    rm -rf "$WORK"
}
trap cleanup EXIT

expect_in() { # expect_in "description" file pattern
    if grep -qE -- "$3" "$2"; then
        pass
    else
        fail "$1: '$3' not in $2:"
        head -5 "$2" | sed 's/^/  /'
    fi
}

A="$WORK/alice"
B="$WORK/bob"
C="$WORK/carol"

# init
check "init alice" 0 "$PARLEY" --profile "$A" init --name Alice --key-bits 2048
ALICE=$(cat "$WORK/out")
expect_in "init prints a contact id" "$WORK/out" '^[0-9a-f]{64}$'
[ "$(stat -c %a "$A")" = 700 ] && [ "$(stat -c %a "$A/identity.key")" = 600 ] ||
    fail "profile permissions"
check "second init refuses" 1 "$PARLEY" --profile "$A" init --name Again --key-bits 2048
expect_in "second init says why" "$WORK/err" "refusing to overwrite"
check "id" 0 "$PARLEY" --profile "$A" id
[ "$(cat "$WORK/out")" = "$ALICE" ] || fail "id differs from init"
check "id --qr" 0 "$PARLEY" --profile "$A" id --qr
[ "$(wc -l <"$WORK/out")" -gt 10 ] || fail "no QR code drawn"
check "id --json" 0 "$PARLEY" --profile "$A" id --json
[ "$(jget "$WORK/out" "['id']")" = "$ALICE" ] || fail "id --json"
PARLEY_PROFILE="$A" check "PARLEY_PROFILE is honoured" 0 "$PARLEY" id

check "init with an over-long name" 2 "$PARLEY" --profile "$C" init --name "$(printf 'x%.0s' $(seq 1 65))" --key-bits 2048
[ ! -e "$C/identity.key" ] || fail "a refused init left files"

# bob has an encrypted key
check "init bob with passphrase" 0 env PARLEY_PASSPHRASE=hunter2 "$PARLEY" --profile "$B" init --name Bob --key-bits 2048
BOB=$(cat "$WORK/out")
grep -q "ENCRYPTED PRIVATE KEY" "$B/identity.key" || fail "bob's key not encrypted"
echo "wrong" >"$WORK/wrong.txt"
check "wrong passphrase" 1 "$PARLEY" --profile "$B" --passphrase-file "$WORK/wrong.txt" up --bind 127.0.0.1 --network $NET
expect_in "wrong passphrase message" "$WORK/err" "wrong passphrase"
check "no passphrase, no terminal" 1 env -u PARLEY_PASSPHRASE setsid "$PARLEY" --profile "$B" daemon --bind 127.0.0.1 --network $NET </dev/null
expect_in "passphrase required message" "$WORK/err" "passphrase"

# daemon not running
check "status without daemon" 3 "$PARLEY" --profile "$A" status
expect_in "how to start" "$WORK/err" "parley up"
check "down without daemon" 3 "$PARLEY" --profile "$A" down

# up / status
check "up alice" 0 "$PARLEY" --profile "$A" up --bind 127.0.0.1 --network $NET --log-level debug
check "up alice again is fine" 0 "$PARLEY" --profile "$A" up --bind 127.0.0.1 --network $NET
[ "$(stat -c %a "$A/control.sock")" = 600 ] || fail "control.sock mode"
check "status --json" 0 "$PARLEY" --profile "$A" status --json
PORT_A=$(jget "$WORK/out" "['dht']['port']")
[ "$(jget "$WORK/out" "['id']")" = "$ALICE" ] || fail "status id"
[ "$(jget "$WORK/out" "['dht']['network']")" = "$NET" ] || fail "status network"
[ "$(jget "$WORK/out" "['name']")" = "Alice" ] || fail "status name"
check "status for people" 0 "$PARLEY" --profile "$A" status
expect_in "status shows dht line" "$WORK/out" "^dht: "
echo "hunter2" >"$WORK/right.txt"
check "up bob with the passphrase file" 0 "$PARLEY" --profile "$B" --passphrase-file "$WORK/right.txt" up --bind 127.0.0.1 --network $NET --bootstrap 127.0.0.1:$PORT_A

# the passphrase reached bob's daemon through a pipe, not its environment
BOB_PID=$(cat "$B/daemon.lock")
if tr '\0' '\n' </proc/"$BOB_PID"/environ | grep -q PARLEY_PASSPHRASE || grep -q hunter2 /proc/"$BOB_PID"/cmdline; then
    fail "passphrase visible in the daemon's environment or arguments"
else
    pass
fi

# lookups
alice_online() {
    "$PARLEY" --profile "$B" lookup "$ALICE" --timeout 3 --json >"$WORK/lookup" 2>"$WORK/err" &&
        [ "$(jget "$WORK/lookup" "['state']")" = online ]
}
wait_until 30 alice_online && pass || { fail "bob cannot find alice online"; cat "$WORK/lookup" "$WORK/err"; }
[ "$(jget "$WORK/lookup" "['name']")" = Alice ] || fail "lookup name"
check "lookup for people" 0 "$PARLEY" --profile "$B" lookup "$ALICE"
expect_in "lookup shows state" "$WORK/out" "state: +online"
check "lookup upper case id" 0 "$PARLEY" --profile "$B" lookup "$(echo "$ALICE" | tr a-f A-F)" --json
check "lookup of a never-existing id" 0 "$PARLEY" --profile "$B" lookup "$(printf '%064d' 7)" --timeout 2 --json
[ "$(jget "$WORK/out" "['state']")" = not-found ] || fail "not-found"
[ "$(jget "$WORK/out" "['last_seen']")" = None ] || fail "not-found last_seen"

# contacts: alice asks bob, bob accepts
check "contacts empty" 0 "$PARLEY" --profile "$A" contacts --json
[ "$(cat "$WORK/out")" = "[]" ] || fail "contacts not empty"
check "contact add" 0 "$PARLEY" --profile "$A" contact add "$BOB" --message $'hi bob \e[31mred' --alias bobby --json
[ "$(jget "$WORK/out" "['delivery']")" = stored ] || { fail "request not stored"; cat "$WORK/out"; }
has_request() { "$PARLEY" --profile "$B" contact requests --json >"$WORK/req" 2>/dev/null && grep -q "$ALICE" "$WORK/req"; }
wait_until 15 has_request && pass || fail "bob never saw alice's request"
check "requests for people" 0 "$PARLEY" --profile "$B" contact requests
if grep -q $'\e' "$WORK/out"; then fail "escape sequence reached the terminal"; else pass; fi
expect_in "request shows the message" "$WORK/out" "hi bob"
check "accept unknown" 1 "$PARLEY" --profile "$B" contact accept "$(printf '%064d' 5)"
check "accept malformed" 2 "$PARLEY" --profile "$B" contact accept nothex
check "accept" 0 "$PARLEY" --profile "$B" contact accept "$ALICE"
accepted() { "$PARLEY" --profile "$A" contacts --json >"$WORK/c" 2>/dev/null && grep -q '"state":"accepted"' "$WORK/c"; }
wait_until 15 accepted && pass || { fail "alice never saw the acceptance"; cat "$WORK/c"; }
[ "$(jget "$WORK/c" "[0]['alias']")" = bobby ] || fail "alias"
check "contacts for people" 0 "$PARLEY" --profile "$A" contacts
expect_in "contacts shows accepted" "$WORK/out" "accepted"
check "decline without a request" 1 "$PARLEY" --profile "$B" contact decline "$(printf '%064d' 9)"
check "block" 0 "$PARLEY" --profile "$B" contact block "$(printf '%064d' 9)"
check "unblock" 0 "$PARLEY" --profile "$B" contact unblock "$(printf '%064d' 9)"
check "unblock again" 1 "$PARLEY" --profile "$B" contact unblock "$(printf '%064d' 9)"
check "remove unknown" 1 "$PARLEY" --profile "$B" contact remove "$(printf '%064d' 9)"
check "add self" 1 "$PARLEY" --profile "$A" contact add "$ALICE"
expect_in "add self says why" "$WORK/err" "your own contact id"
check "remove unknown says why" 1 "$PARLEY" --profile "$B" contact remove "$(printf '%064d' 9)"
expect_in "remove unknown says why" "$WORK/err" "unknown contact 0{63}9"
check "contact without subcommand" 2 "$PARLEY" --profile "$A" contact
check "contacts without daemon" 3 "$PARLEY" --profile "$C" contacts

# bad arguments
check "malformed contact id" 2 "$PARLEY" --profile "$B" lookup abc
expect_in "malformed id message" "$WORK/err" "64 hexadecimal"
check "unknown command" 2 "$PARLEY" frobnicate
check "missing argument" 2 "$PARLEY" --profile "$B" lookup
check "bad key size" 2 "$PARLEY" --profile "$C" init --key-bits 512
check "bad log level" 2 "$PARLEY" --profile "$A" daemon --log-level loud --network $NET
check "bad bootstrap" 2 "$PARLEY" --profile "$C" up --bootstrap nohostport --network $NET
check "bad up timeout" 2 "$PARLEY" --profile "$A" up --timeout 0 --network $NET
check "bad down timeout" 2 "$PARLEY" --profile "$A" down --timeout -1
mkdir -p "$WORK/cfg" && cp -r "$A/identity.key" "$A/identity.crt" "$WORK/cfg/"
echo '{"port": 70000}' >"$WORK/cfg/config.json"
check "config.json out of range" 1 "$PARLEY" --profile "$WORK/cfg" daemon --bind 127.0.0.1 --network $NET
expect_in "config error names the file" "$WORK/err" "config.json"
echo '{"bootstrap": ["nope"]}' >"$WORK/cfg/config.json"
check "config.json bad bootstrap" 1 "$PARLEY" --profile "$WORK/cfg" daemon --bind 127.0.0.1 --network $NET
expect_in "config bootstrap error" "$WORK/err" "config.json.*bad bootstrap"
check "--help" 0 "$PARLEY" --help
expect_in "help lists commands" "$WORK/out" "lookup"
check "lookup --help" 0 "$PARLEY" lookup --help
check "no identity yet" 1 "$PARLEY" --profile "$C" up --network $NET --bind 127.0.0.1

# graceful stop: alice shows offline at once
check "down alice" 0 "$PARLEY" --profile "$A" down
check "status after down" 3 "$PARLEY" --profile "$A" status
check "lookup after down" 0 "$PARLEY" --profile "$B" lookup "$ALICE" --timeout 5 --json
[ "$(jget "$WORK/out" "['state']")" = offline ] || { fail "alice not offline after down"; cat "$WORK/out"; }
[ -s "$A/nodes.txt" ] || fail "known nodes not saved"

# a foreground daemon stops cleanly on SIGTERM
"$PARLEY" --profile "$A" daemon --bind 127.0.0.1 --network $NET >"$WORK/fg.log" 2>&1 &
FG=$!
for _ in $(seq 1 100); do [ -S "$A/control.sock" ] && break; sleep 0.05; done
start=$(date +%s%N)
kill -TERM $FG
wait $FG
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ $rc -eq 0 ] && [ $ms -lt 8000 ]; then pass; else fail "SIGTERM: exit $rc after $ms ms"; tail -5 "$WORK/fg.log"; fi
[ ! -e "$A/control.sock" ] || fail "control.sock left behind"

check "down bob" 0 "$PARLEY" --profile "$B" down

summary cli
