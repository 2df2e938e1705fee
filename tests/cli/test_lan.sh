#!/usr/bin/env bash
# LAN discovery: two daemons with no bootstrap at all find each other by multicast.
# Runs inside a network namespace that this test creates, with only `lo` and a multicast
# route (FACTS.md), so no multicast ever leaves the machine. Needs root; skips (77) otherwise.
set -u
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PARLEY=${1:?usage: test_lan.sh PATH_TO_PARLEY}
skip_unless_root "LAN discovery test needs root and iproute2 (network namespaces)" ip
NS="parley-lan-$$"
add_netns_or_skip "$NS"
WORK=$(mktemp -d /tmp/parley-lan.XXXXXX)
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
cleanup() {
    ip netns pids "$NS" 2>/dev/null | xargs -r kill -TERM 2>/dev/null
    sleep 0.5
    ip netns pids "$NS" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up
in_ns ip route add 224.0.0.0/4 dev lo
# Only loopback exists in the namespace: "every address" means 127.0.0.1 and ::1 here,
# and LAN discovery stays on because the daemons are not bound to a loopback address.
in_ns "$PARLEY" --profile "$WORK/a" init --name A --key-bits 2048 >"$WORK/a.id" 2>/dev/null
in_ns "$PARLEY" --profile "$WORK/b" init --name B --key-bits 2048 >"$WORK/b.id" 2>/dev/null
in_ns "$PARLEY" --profile "$WORK/a" up --network $NET || exit 1
in_ns "$PARLEY" --profile "$WORK/b" up --network $NET || exit 1
in_ns "$PARLEY" --profile "$WORK/a" status --json | grep -q '"lan_discovery": true' ||
    { echo "FAIL: LAN discovery is not on"; exit 1; }
a_online() {
    in_ns "$PARLEY" --profile "$WORK/b" lookup "$(cat "$WORK/a.id")" --timeout 2 --json 2>/dev/null |
        grep -q '"state":"online"'
}
if wait_until 60 a_online; then
    pass
    in_ns "$PARLEY" --profile "$WORK/a" down >/dev/null 2>&1
    in_ns "$PARLEY" --profile "$WORK/b" down >/dev/null 2>&1
    summary lan "B found A with no bootstrap"
    exit
fi
echo "FAIL: B never found A through LAN discovery"
in_ns "$PARLEY" --profile "$WORK/b" status --json
tail -20 "$WORK/b/daemon.log"
exit 1
