#!/usr/bin/env bash
# Direct connections through two NATs: h1 behind nat1 and h2 behind nat2 (nftables
# masquerade, conntrack) meet through a bootstrap node on the lab's "public" segment, become
# contacts, and `parley ping` from h1 must reach h2 directly at nat2's public address. The
# lab is contrib/netlab/netlab.sh: namespaces only, nothing in the root namespace, nothing
# leaves the machine (docs/NAT.md). Needs root, iproute2, nftables and python3; skips (77)
# otherwise, and also while parley has no `ping` command (the lab checks still run first).
set -u
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PARLEY=${1:?usage: test_netlab.sh PATH_TO_PARLEY}
skip_unless_root "NAT lab test needs root, iproute2, nftables and python3" ip nft python3
PREFIX="plab-t$$"
# A run killed outright (SIGKILL on a CTest timeout) cannot clean up: remove the labs of
# earlier runs whose shell is gone (their prefix carries that shell's PID), and their state.
remove_stale_labs plab-t
for state in /tmp/parley-netlab.*/netlab/plab-t*; do
    [ -e "$state" ] && ! kill -0 "${state##*/plab-t}" 2>/dev/null && rm -rf "${state%/netlab/*}"
done
# Probe in a throwaway namespace: can we make one, and does nftables NAT work inside it?
add_netns_or_skip "$PREFIX-probe"
if ! ip netns exec "$PREFIX-probe" nft -f - 2>/dev/null <<'EOF'
table ip probe {
    chain p { type nat hook postrouting priority srcnat; oifname "x" masquerade random; }
}
EOF
then
    ip netns del "$PREFIX-probe"
    skip "nftables masquerade is not available in a network namespace"
fi
ip netns del "$PREFIX-probe"

WORK=$(mktemp -d /tmp/parley-netlab.XXXXXX)
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
# The lab's state file goes to our temp dir: other labs on the machine are not touched.
export NETLAB_STATE_DIR="$WORK/netlab"
PUB_IP=$("$NETLAB" addr pub)
NAT1_IP=$("$NETLAB" addr nat1)
NAT2_IP=$("$NETLAB" addr nat2)
H2_IP=$("$NETLAB" addr h2)
BOOT_PORT=4222 H1_PORT=4301 H2_PORT=4302

# `down` kills every process in the lab's namespaces (the daemons too) and deletes them.
cleanup() {
    "$NETLAB" down --prefix "$PREFIX" >/dev/null 2>&1
    rm -rf "$WORK"
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
        echo "--- $h daemon.log (last 15 lines)"
        tail -"${PARLEY_NETLAB_TAIL:-15}" "$WORK/$h/daemon.log"
    done
}
finish() { # finish EXIT_CODE_IF_NO_FAILURES MESSAGE
    summary netlab "$2" || { logs; exit 1; }
    exit "$1"
}

"$NETLAB" up --prefix "$PREFIX" >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; echo "FAIL: netlab up"; exit 1; }

# --- the lab itself, with plain UDP before any parley: NAT works, the LANs are sealed.
write_udp_py "$WORK/udp.py"
on pub python3 "$WORK/udp.py" echo 7000 4 &
on h2 python3 "$WORK/udp.py" echo 7000 4 &
sleep 0.3
# h1 reaches the public host, which sees nat1's public address (masquerade).
seen=$(on h1 python3 "$WORK/udp.py" probe "$PUB_IP" 7000)
[ "${seen%:*}" = "$NAT1_IP" ] && pass || fail "h1 -> pub: pub saw '${seen}', expected $NAT1_IP:*"
# h1 cannot reach h2's private address, nor can pub or nat1: only NAT'd traffic crosses.
on h1 python3 "$WORK/udp.py" probe "$H2_IP" 7000 >/dev/null && fail "h1 reached h2's private address $H2_IP" || pass
on nat1 python3 "$WORK/udp.py" probe "$H2_IP" 7000 >/dev/null && fail "nat1 reached h2's private address" || pass
on pub python3 "$WORK/udp.py" probe "$H2_IP" 7000 >/dev/null && fail "pub reached h2's private address" || pass
# Unsolicited traffic to nat2's public address does not get to h2 (no mapping, no forward).
on pub python3 "$WORK/udp.py" probe "$NAT2_IP" 7000 >/dev/null && fail "pub reached h2 unsolicited" || pass
wait
# The root namespace is untouched: no route to the lab's ranges.
if ip -4 route show | grep -qE '^(198\.18\.|10\.1\.0\.|10\.2\.0\.)'; then fail "the root namespace has a lab route"; else pass; fi

# --- parley: a bootstrap node on the public segment, h1 and h2 behind their NATs.
for h in pub h1 h2; do
    p "$h" init --name "$h" --key-bits 2048 >"$WORK/$h.id" 2>"$WORK/init.err" ||
        { cat "$WORK/init.err"; fail "init $h"; finish 1 "init"; }
done
H1=$(cat "$WORK/h1.id")
H2=$(cat "$WORK/h2.id")
up() { # up HOST ARGS...
    local h=$1
    shift
    p "$h" up --network $NET --no-lan --log-level "${PARLEY_NETLAB_LOG:-info}" "$@" >"$WORK/up.$h" 2>&1 || { fail "up $h"; cat "$WORK/up.$h"; }
}
up pub --bind "$PUB_IP" --port $BOOT_PORT
# h1 and h2 bind every address, as a user's node would; no LAN discovery (each LAN has one host).
up h1 --port $H1_PORT --bootstrap "$PUB_IP:$BOOT_PORT"
up h2 --port $H2_PORT --bootstrap "$PUB_IP:$BOOT_PORT"
[ $failures -eq 0 ] || finish 1 "daemons did not start"

# The DHT tells each node its public address: the NAT's, not the private one.
public_is() { p "$1" status --json >"$WORK/st.$1" 2>/dev/null && [ "$(jget "$WORK/st.$1" "['dht']['public_address']")" = "$2" ]; }
wait_until 20 public_is h1 "$NAT1_IP" && pass ||
    fail "h1's public address is '$(jget "$WORK/st.h1" "['dht']['public_address']")', expected $NAT1_IP"
wait_until 10 public_is h2 "$NAT2_IP" && pass ||
    fail "h2's public address is '$(jget "$WORK/st.h2" "['dht']['public_address']")', expected $NAT2_IP"

# Contacts: h1 asks, h2 accepts, h1 sees it accepted.
p h1 contact add "$H2" --message "through two NATs" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; fail "contact add"; }
has_request() { p h2 contact requests --json 2>/dev/null | grep -q "$H1"; }
wait_until 20 has_request && pass || fail "h2 never saw h1's request"
p h2 contact accept "$H1" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; fail "contact accept"; }
accepted() { p h1 contacts --json 2>/dev/null | grep -q '"state":"accepted"'; }
wait_until 20 accepted && pass || fail "h1 never saw the acceptance"
online() { p "$1" lookup "$2" --timeout 2 --json 2>/dev/null | grep -q '"state":"online"'; }
wait_until 10 online h1 "$H2" && pass || fail "h1 does not see h2 online"
wait_until 10 online h2 "$H1" && pass || fail "h2 does not see h1 online"
[ $failures -eq 0 ] || finish 1 "no direct connection tried"

# --- the point: a direct QUIC connection h1 <-> h2 through both NATs.
if ! "$PARLEY" --help 2>/dev/null | grep -qE '^ +ping +'; then
    echo "skipped: parley has no 'ping' command yet; the lab and the contacts work"
    finish 77 "direct path not checked: no ping"
fi
ping_to() { # ping_to FROM TO_ID EXPECTED_IP: connected, and the remote is the peer's NAT
    local rc connected remote
    p "$1" ping "$2" --count 3 --json >"$WORK/ping.$1" 2>"$WORK/ping.$1.err"
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "$1: ping exited $rc"; cat "$WORK/ping.$1" "$WORK/ping.$1.err"; return 1
    fi
    connected=$(jget "$WORK/ping.$1" "['connected']")
    remote=$(jget "$WORK/ping.$1" "['remote']")
    if [ "$connected" = True ] && [ "${remote%:*}" = "$3" ]; then
        pass
    else
        fail "$1: ping connected=$connected remote=$remote, expected a connection to $3:*"
        cat "$WORK/ping.$1"
        return 1
    fi
}
ping_to h1 "$H2" "$NAT2_IP"
ping_to h2 "$H1" "$NAT1_IP"
[ $failures -eq 0 ] || finish 1 "no direct path through both NATs"
finish 0 "h1 reached h2 directly at $(jget "$WORK/ping.h1" "['remote']") through both NATs, setup $(jget "$WORK/ping.h1" "['setup_ms']") ms"
