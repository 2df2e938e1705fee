#!/usr/bin/env bash
# Sets everything up and runs the demo: a private parley network of five nodes on 127.0.0.1.
# Each node gets an identity; they find each other by key hash alone through the DHT; two
# become contacts, connect directly, chat and share a folder; one leaves and is seen offline
# at once; a key hash nobody owns is not found. Nothing leaves
# the machine: loopback only, a random private network id, no public bootstrap, no LAN
# multicast (bound to loopback). Usage: contrib/demo.sh [--no-setup]
# (PARLEY_BUILD_DIR: another build directory than build/.)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${PARLEY_BUILD_DIR:-build}
if [ "${1:-}" != "--no-setup" ]; then
    bash contrib/install-deps.sh
    bash contrib/build.sh "$BUILD"
fi
PARLEY=$PWD/$BUILD/bin/parley
WORK=$(mktemp -d /tmp/parley-demo.XXXXXX)
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
NAMES=(alice bob carol dave erin)

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
cleanup() {
    for n in "${NAMES[@]}"; do
        [ -S "$WORK/$n/control.sock" ] && "$PARLEY" --profile "$WORK/$n" down >/dev/null 2>&1
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

bold "1. Everyone creates an identity (RSA-3072); the contact id is the SHA-256 of the public key"
declare -A ID
for n in "${NAMES[@]}"; do
    ID[$n]=$("$PARLEY" --profile "$WORK/$n" init --name "$n" 2>/dev/null)
    printf '  %-6s %s\n' "$n" "${ID[$n]}"
done
run "$PARLEY" --profile "$WORK/alice" id --qr

bold "2. Five daemons join a private DHT (network $NET) on 127.0.0.1; alice is the bootstrap"
run "$PARLEY" --profile "$WORK/alice" up --bind 127.0.0.1 --network $NET
PORT=$("$PARLEY" --profile "$WORK/alice" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["dht"]["port"])')
for n in "${NAMES[@]:1}"; do
    "$PARLEY" --profile "$WORK/$n" up --bind 127.0.0.1 --network $NET --bootstrap 127.0.0.1:$PORT
done
sleep 1
run "$PARLEY" --profile "$WORK/erin" status

bold "3. Erin knows only alice's and bob's key hashes, and finds them"
for n in alice bob; do
    for _ in $(seq 1 20); do
        out=$("$PARLEY" --profile "$WORK/erin" lookup "${ID[$n]}" --timeout 3)
        grep -q "online" <<<"$out" && break
        sleep 0.2
    done
    printf '\033[2m$ parley lookup %s\033[0m\n%s\n' "${ID[$n]}" "$out"
done
echo "  the same as JSON, for scripts:"
run "$PARLEY" --profile "$WORK/erin" lookup "${ID[carol]}" --json

bold "4. Erin asks carol to be her contact; carol accepts (encrypted envelopes in DHT inboxes)"
run "$PARLEY" --profile "$WORK/erin" contact add "${ID[carol]}" --alias carol --message "hi, erin here"
wait_for() { # wait_for SECONDS COMMAND...: until the command succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.2
    done
}
wait_for 20 bash -c "'$PARLEY' --profile '$WORK/carol' contact requests | grep -q erin"
run "$PARLEY" --profile "$WORK/carol" contact requests
run "$PARLEY" --profile "$WORK/carol" contact accept "${ID[erin]}"
wait_for 20 bash -c "'$PARLEY' --profile '$WORK/erin' contacts --json | grep -q '\"accepted\"'"
run "$PARLEY" --profile "$WORK/erin" contacts

bold "5. Erin connects to carol directly: QUIC, TLS 1.3 pinned to both key hashes"
echo "  (a connect request and answer travel encrypted through the DHT; then it is peer to peer)"
run "$PARLEY" --profile "$WORK/erin" ping carol --count 3
echo "  the connection stays up and is reused:"
run "$PARLEY" --profile "$WORK/carol" ping "${ID[erin]}" --count 2 --json

bold "6. Erin and carol chat: stored on both sides, delivered exactly once, acknowledged"
run "$PARLEY" --profile "$WORK/erin" send carol "hello carol, photos coming" --wait
run "$PARLEY" --profile "$WORK/carol" send "${ID[erin]}" "thanks, send them over" --wait
run "$PARLEY" --profile "$WORK/erin" history carol

bold "7. Erin shares a folder with carol: every chunk verified, modes and times kept"
mkdir -p "$WORK/photos/2026/empty album"
head -c 3000000 /dev/urandom >"$WORK/photos/2026/beach.raw"
for i in $(seq 1 50); do echo "note $i" >"$WORK/photos/2026/note-$i.txt"; done
run "$PARLEY" --profile "$WORK/carol" contact set "${ID[erin]}" --auto-accept "$WORK/carol-inbox"
run "$PARLEY" --profile "$WORK/erin" share carol "$WORK/photos" --message "the trip" --wait
wait_for 20 bash -c "'$PARLEY' --profile '$WORK/carol' transfers --json | grep -q completed"
run "$PARLEY" --profile "$WORK/carol" transfers
run diff -r "$WORK/photos" "$WORK/carol-inbox/photos"
echo "  (diff -r found no difference)"

bold "8. Bob leaves: his node publishes an offline presence, so others see it at once"
run "$PARLEY" --profile "$WORK/bob" down
run "$PARLEY" --profile "$WORK/erin" lookup "${ID[bob]}"

bold "9. A key hash nobody owns is not found"
run "$PARLEY" --profile "$WORK/erin" lookup "$(printf '%064x' 48879)" --timeout 3

bold "Done: no server anywhere, only key hashes. Stopping the network."
