#!/usr/bin/env bash
# A NAT lab in network namespaces: two hosts, each behind its own NAT router, and a public
# host, all on one machine. It is how parley's direct connections (DESIGN.md §6) are tried
# against real Linux NAT (nftables masquerade + conntrack) without any network.
#
#   usage: netlab.sh up [--prefix NAME] [--symmetric] [--open-routers] [--upnp | --upnp-igd-only]
#                       [--loss PCT]
#          netlab.sh down [--prefix NAME]
#          netlab.sh exec [--prefix NAME] HOST CMD...
#          netlab.sh status [--prefix NAME]
#          netlab.sh loss [--prefix NAME] PCT [nat1|nat2]   (both routers unless one is named)
#          netlab.sh move [--prefix NAME] nat1|nat2|h1|h2 [ADDR]   (prints the new address)
#          netlab.sh addr HOST          (prints HOST's address on the public segment or its LAN)
#   HOST is one of: pub nat1 nat2 h1 h2 wan; for addr also nat1-upnp (see --upnp)
#
#             "internet" 198.18.0.0/24 (RFC 2544 test range): a bridge in namespace `wan`
#        +--------------------------+--------------------------+
#   pub 198.18.0.10       nat1 198.18.0.11             nat2 198.18.0.12
#                         masquerade                   masquerade [random with --symmetric]
#                         10.1.0.1                     10.2.0.1
#                            |                            |
#                         h1 10.1.0.10                 h2 10.2.0.10
#
# Everything lives in namespaces named PREFIX-HOST (default prefix plab-PID); interfaces are
# created inside them directly, so the root namespace gets no interface, address or route and
# nothing can leave the machine. `down` deletes the namespaces, which deletes their veths.
# The commands other than `up` find the lab by --prefix, else $NETLAB_PREFIX, else the only
# lab recorded in $NETLAB_STATE_DIR (default /run/parley-netlab). See docs/NAT.md.
#
# --upnp runs Debian's miniupnpd (nftables backend) in nat1, answering UPnP IGD and NAT-PMP
# on its LAN side only (--upnp-igd-only: NAT-PMP off, so clients fall back to UPnP).
# miniupnpd refuses to map on a reserved WAN address, and every test range (198.18/15 and
# the documentation nets) is reserved; so nat1 also gets NAT1_UPNP_IP, a global address
# that exists only inside the lab (pub and nat2 route it to nat1 on the public segment),
# and miniupnpd reports it as nat1's external address. Nothing can reach the real owner of
# that address: the lab has no link out of its namespaces. Outbound traffic is still
# masqueraded to 198.18.0.11; only mapped ports answer on NAT1_UPNP_IP.
#
# --loss PCT drops that share of the packets each router forwards, at random, both ways (an
# nftables `numgen random` rule in a forward chain of its own; PCT 0-100, one decimal at
# most: 2.5). `loss PCT [ROUTER]` changes it while the lab is up (0: none). tc netem is not
# needed (nor available on every kernel); for a rate cap use tc tbf in a router namespace.
#
# `move` gives a host a new address, as when the machine's address changes under a running
# program: nat1/nat2 a new public address (what an ISP does to a home router: the old one is
# removed, and with it the router's masquerade entries, so every flow leaves from the new one),
# h1/h2 a new LAN address (a new DHCP lease: the router keeps its old entries, and the new
# flows may get other public ports). ADDR must be in the same /24; without it the next free
# one is taken (nat1 198.18.0.21, .31, ...; h1 10.1.0.11, ...). `addr` still prints the
# addresses of `up`; `status` shows the current ones.
set -u

STATE_DIR=${NETLAB_STATE_DIR:-/run/parley-netlab}
HOSTS=(wan pub nat1 nat2 h1 h2)
NAT1_UPNP_IP=11.0.0.11
declare -A ADDR=([pub]=198.18.0.10 [nat1]=198.18.0.11 [nat2]=198.18.0.12
                 [h1]=10.1.0.10 [h2]=10.2.0.10 [nat1-upnp]=$NAT1_UPNP_IP)

die() { echo "netlab: $*" >&2; exit 1; }
usage() { sed -n '/^#   usage:/,/^#   HOST/p' "$0" | sed 's/^#//' >&2; exit 2; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces and nftables need CAP_NET_ADMIN)"
    local t
    for t in ip nft; do
        command -v "$t" >/dev/null || die "'$t' not found (install iproute2 and nftables)"
    done
}

valid_prefix() { [[ $1 =~ ^[A-Za-z0-9_.-]{1,40}$ ]]; }

# The lab the non-`up` commands act on: explicit, from the environment, or the only one there is.
resolve_prefix() {
    local given=$1
    [ -n "$given" ] || given=${NETLAB_PREFIX:-}
    if [ -z "$given" ]; then
        local labs=()
        [ -d "$STATE_DIR" ] && mapfile -t labs < <(ls -1 "$STATE_DIR")
        case ${#labs[@]} in
            0) die "no lab is up (netlab.sh up)" ;;
            1) given=${labs[0]} ;;
            *) die "several labs are up (${labs[*]}); say which with --prefix" ;;
        esac
    fi
    valid_prefix "$given" || die "bad prefix '$given' (letters, digits, . _ -; at most 40)"
    PREFIX=$given
}

ns() { echo "$PREFIX-$1"; }
in_ns() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }

# A veth pair created directly inside the two namespaces: no name ever exists in the root
# namespace, so labs cannot collide on interface names, and short names suffice.
link() { # link HOST_A IFNAME_A HOST_B IFNAME_B
    ip link add name "$2" netns "$(ns "$1")" type veth peer name "$4" netns "$(ns "$3")"
}

addr_up() { # addr_up HOST IFNAME CIDR
    in_ns "$1" ip addr add "$3" dev "$2"
    in_ns "$1" ip link set "$2" up
}

# A NAT router as a home router is: LAN to WAN forwarded and masqueraded, replies let back in
# by conntrack, nothing unsolicited from the WAN side, neither forwarded nor to the router.
# Dropping unsolicited inbound in the filter hooks matters for hole punching: a dropped
# packet's conntrack entry is never confirmed, so a peer's early punch does not occupy the
# tuple our own outgoing packet needs (an accepted one would, and masquerade would then pick
# another port). No route to the other LAN exists either: only NAT'd traffic crosses.
# With --open-routers the router itself accepts unsolicited WAN packets (no input filter),
# which shows that failure (docs/NAT.md).
# With --upnp, nat1's forward chain also lets by what miniupnpd's mappings DNAT (RULE).
nat_rules() { # nat_rules HOST random|"" accept|drop [RULE]
    in_ns "$1" nft -f - <<EOF
table ip netlab {
    chain loss {
        type filter hook forward priority filter - 5; policy accept;
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade $2
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan0" oifname "wan0" accept
        ${4:-}
    }
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" $3
    }
}
EOF
}

# miniupnpd's own tables in nat1, as Debian's nft_init.sh would make them (that script ships
# with the `miniupnpd` package, which also brings a system service; the lab needs only the
# daemon from miniupnpd-nftables). miniupnpd fills the non-base chains.
upnp_tables() {
    in_ns nat1 nft -f - <<'EOF'
table inet miniupnpd {
    chain forward {
        type filter hook forward priority filter - 10; policy accept;
        jump miniupnpd
    }
    chain miniupnpd {
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority srcnat - 10; policy accept;
        jump postrouting_miniupnpd
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
}
EOF
}

# Random loss in a router's forwarded traffic, both directions: PCT (0-100, at most one
# decimal) of the packets, drawn per packet by nftables (numgen random over 0..999).
valid_loss() { [[ $1 =~ ^([0-9]{1,2}(\.[0-9])?|100(\.0)?)$ ]]; }
set_loss() { # set_loss ROUTER PCT
    local permille
    permille=$(awk -v p="$2" 'BEGIN { printf "%d", p * 10 + 0.5 }')
    in_ns "$1" nft flush chain ip netlab loss
    [ "$permille" -eq 0 ] || in_ns "$1" nft add rule ip netlab loss numgen random mod 1000 "<" "$permille" counter drop
}

upnp_dir() { echo "$STATE_DIR/.$PREFIX.upnp"; } # a dot: `ls` of STATE_DIR lists labs only

# miniupnpd in nat1, in the foreground (-d) so that `down` finds it among the namespace's
# processes; its config, lease file and log in the lab's state directory.
upnp_start() { # upnp_start yes|no (NAT-PMP)
    local dir uuid
    dir=$(upnp_dir)
    mkdir -p "$dir"
    uuid=$(cat /proc/sys/kernel/random/uuid)
    in_ns nat1 ip addr add "$NAT1_UPNP_IP/32" dev wan0
    in_ns pub ip route add "$NAT1_UPNP_IP/32" dev eth0
    in_ns nat2 ip route add "$NAT1_UPNP_IP/32" dev wan0
    upnp_tables
    cat >"$dir/miniupnpd.conf" <<EOF
ext_ifname=wan0
ext_ip=$NAT1_UPNP_IP
listening_ip=lan0
http_port=0
enable_upnp=yes
enable_natpmp=$1
secure_mode=yes
system_uptime=no
uuid=$uuid
serial=$PREFIX
friendly_name=parley netlab nat1
lease_file=$dir/leases
upnp_table_name=miniupnpd
upnp_nat_table_name=miniupnpd
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
min_lifetime=120
max_lifetime=86400
allow 1024-65535 10.1.0.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
    in_ns nat1 "$MINIUPNPD" -d -f "$dir/miniupnpd.conf" -P "$dir/miniupnpd.pid" \
        </dev/null >"$dir/miniupnpd.log" 2>&1 &
    local _
    for _ in $(seq 50); do
        grep -q "HTTP listening on port" "$dir/miniupnpd.log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "netlab: miniupnpd did not start in nat1:" >&2
    cat "$dir/miniupnpd.log" >&2
    return 1
}

cmd_up() {
    local prefix="plab-$$" symmetric=0 wan_input=drop upnp="" loss=0
    while [ $# -gt 0 ]; do
        case $1 in
            --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
            --loss) [ $# -ge 2 ] || usage; loss=$2; shift 2
                    valid_loss "$loss" || die "bad --loss '$loss' (a percentage 0-100, e.g. 5 or 2.5)" ;;
            --symmetric) symmetric=1; shift ;;
            --open-routers) wan_input=accept; shift ;;
            --upnp) upnp=yes; shift ;;
            --upnp-igd-only) upnp=no; shift ;;
            *) usage ;;
        esac
    done
    valid_prefix "$prefix" || die "bad prefix '$prefix' (letters, digits, . _ -; at most 40)"
    if [ -n "$upnp" ]; then
        MINIUPNPD=${MINIUPNPD:-$(command -v miniupnpd || echo /usr/sbin/miniupnpd)}
        [ -x "$MINIUPNPD" ] || die "--upnp needs miniupnpd (apt-get install miniupnpd-nftables)"
        "$MINIUPNPD" --version 2>&1 | grep -q nftables ||
            die "--upnp needs miniupnpd's nftables backend (miniupnpd-nftables, not -iptables)"
    fi
    PREFIX=$prefix
    local h
    for h in "${HOSTS[@]}"; do
        [ ! -e "/run/netns/$(ns "$h")" ] || die "namespace $(ns "$h") exists already: netlab.sh down --prefix $PREFIX"
    done
    mkdir -p "$STATE_DIR"
    local upnp_state=""
    case $upnp in
        yes) upnp_state=" nat1=upnp+natpmp($NAT1_UPNP_IP)" ;;
        no) upnp_state=" nat1=upnp($NAT1_UPNP_IP)" ;;
    esac
    echo "nat2=$([ $symmetric = 1 ] && echo symmetric || echo cone) routers=$([ $wan_input = drop ] && echo firewalled || echo open)$upnp_state" >"$STATE_DIR/$PREFIX"
    # From here on a failure takes down whatever was built.
    trap 'echo "netlab: setting up $PREFIX failed; removing it" >&2; cmd_down_resolved; exit 1' ERR
    set -E

    for h in "${HOSTS[@]}"; do
        ip netns add "$(ns "$h")"
        in_ns "$h" ip link set lo up
        # Forwarding off everywhere but the routers. IPv6 off on the lab links (lo keeps ::1):
        # the lab is the IPv4 NAT case, and link-local addresses would only add candidates.
        in_ns "$h" sysctl -qw net.ipv4.ip_forward=0
        in_ns "$h" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    done

    # The public segment: a bridge in `wan`, one port per public host.
    in_ns wan ip link add br0 type bridge
    in_ns wan ip link set br0 up
    link wan pub pub eth0
    link wan nat1 nat1 wan0
    link wan nat2 nat2 wan0
    for h in pub nat1 nat2; do
        in_ns wan ip link set "$h" master br0
        in_ns wan ip link set "$h" up
    done
    addr_up pub eth0 "${ADDR[pub]}/24"
    addr_up nat1 wan0 "${ADDR[nat1]}/24"
    addr_up nat2 wan0 "${ADDR[nat2]}/24"

    # The private LANs. Each host's only way out is its router (the default route); the
    # routers have no default route and no route to the other LAN.
    link nat1 lan0 h1 eth0
    link nat2 lan0 h2 eth0
    addr_up nat1 lan0 10.1.0.1/24
    addr_up nat2 lan0 10.2.0.1/24
    addr_up h1 eth0 "${ADDR[h1]}/24"
    addr_up h2 eth0 "${ADDR[h2]}/24"
    in_ns h1 ip route add default via 10.1.0.1
    in_ns h2 ip route add default via 10.2.0.1

    in_ns nat1 sysctl -qw net.ipv4.ip_forward=1
    in_ns nat2 sysctl -qw net.ipv4.ip_forward=1
    # With --upnp, mapped ports: miniupnpd DNATs them to the LAN host; forward lets them by.
    nat_rules nat1 "" $wan_input "$([ -n "$upnp" ] && echo 'iifname "wan0" oifname "lan0" ct status dnat accept')"
    # `masquerade random`: a random source port for every new conntrack entry, i.e. a
    # different mapping per destination (symmetric NAT), instead of keeping the port.
    nat_rules nat2 "$([ $symmetric = 1 ] && echo random)" $wan_input
    set_loss nat1 "$loss"
    set_loss nat2 "$loss"
    [ -z "$upnp" ] || upnp_start "$upnp"

    trap - ERR
    set +E
    echo "netlab: $PREFIX is up ($(cat "$STATE_DIR/$PREFIX"))$([ "$loss" = 0 ] || echo " loss=$loss%")"
    echo "  pub ${ADDR[pub]}   nat1 ${ADDR[nat1]} (LAN 10.1.0.0/24: h1 ${ADDR[h1]})   nat2 ${ADDR[nat2]} (LAN 10.2.0.0/24: h2 ${ADDR[h2]})"
    [ -z "$upnp" ] || echo "  nat1 runs miniupnpd (UPnP IGD, NAT-PMP $([ "$upnp" = yes ] && echo on || echo off)); mapped ports answer on $NAT1_UPNP_IP"
    echo "  run things with: $0 exec --prefix $PREFIX h1 CMD..."
}

# Every process in a lab namespace gets TERM, then KILL; then the namespaces go (and with
# them every veth and the bridge), then the state file.
cmd_down_resolved() {
    local h pids
    for h in "${HOSTS[@]}"; do
        [ -e "/run/netns/$(ns "$h")" ] && ip netns pids "$(ns "$h")" 2>/dev/null | xargs -r kill -TERM 2>/dev/null
    done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=""
        for h in "${HOSTS[@]}"; do
            [ -e "/run/netns/$(ns "$h")" ] && pids+=$(ip netns pids "$(ns "$h")" 2>/dev/null)
        done
        [ -z "$pids" ] && break
        sleep 0.2
    done
    for h in "${HOSTS[@]}"; do
        [ -e "/run/netns/$(ns "$h")" ] || continue
        ip netns pids "$(ns "$h")" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns del "$(ns "$h")" 2>/dev/null
    done
    rm -f "$STATE_DIR/$PREFIX"
    rm -rf "$(upnp_dir)"
    rmdir "$STATE_DIR" 2>/dev/null
    return 0
}

cmd_status() {
    local h
    echo "lab $PREFIX: $(cat "$STATE_DIR/$PREFIX" 2>/dev/null || echo 'no state file')"
    for h in "${HOSTS[@]}"; do
        if [ ! -e "/run/netns/$(ns "$h")" ]; then
            echo "  $h: namespace $(ns "$h") missing"
            continue
        fi
        [ "$h" = wan ] && { echo "  wan ($(ns wan)): bridge br0, ports $(in_ns wan ip -br link show master br0 | awk '{sub(/@.*/, "", $1); printf "%s ", $1}')"; continue; }
        echo "  $h ($(ns "$h")): $(in_ns "$h" ip -4 -br addr show | awk '$1 != "lo" {printf "%s %s  ", $1, $3}')"
        echo "     routes: $(in_ns "$h" ip -4 route show | paste -sd ';')"
        local pids
        pids=$(ip netns pids "$(ns "$h")" | paste -sd ' ')
        [ -n "$pids" ] && echo "     processes: $pids"
    done
    for h in nat1 nat2; do
        [ -e "/run/netns/$(ns "$h")" ] || continue
        echo "  $h masquerade: $(in_ns "$h" nft list chain ip netlab postrouting | grep -o 'masquerade.*')"
        echo "  $h loss: $(in_ns "$h" nft list chain ip netlab loss | grep -o 'numgen.*' || echo none)"
    done
    if [ -e "/run/netns/$(ns nat1)" ] && in_ns nat1 nft list table inet miniupnpd >/dev/null 2>&1; then
        echo "  nat1 miniupnpd: pid $(cat "$(upnp_dir)/miniupnpd.pid" 2>/dev/null || echo '?'), log $(upnp_dir)/miniupnpd.log"
        echo "     mappings: $(in_ns nat1 nft list chain inet miniupnpd prerouting_miniupnpd | grep -o 'dport.*' | paste -sd ';')"
    fi
}

# cmd_move HOST [ADDR]: a new address for a router's WAN side or a host's LAN side; prints it.
cmd_move() {
    local h=$1 want=${2:-} dev net cur new last gw=""
    case $h in
        nat1|nat2) dev=wan0 net=198.18.0 ;;
        h1) dev=eth0 net=10.1.0 gw=10.1.0.1 ;;
        h2) dev=eth0 net=10.2.0 gw=10.2.0.1 ;;
        *) die "move: one of nat1 nat2 h1 h2" ;;
    esac
    [ -e "/run/netns/$(ns "$h")" ] || die "lab $PREFIX has no namespace $(ns "$h")"
    cur=$(in_ns "$h" ip -4 -o addr show dev $dev | awk -v net="$net." '{sub(/\/.*/, "", $4)} index($4, net) == 1 {print $4; exit}')
    [ -n "$cur" ] || die "move: $h has no address in $net.0/24"
    local used step=1 _
    used=" $(for x in pub nat1 nat2 h1 h2; do [ -e "/run/netns/$(ns "$x")" ] && in_ns "$x" ip -4 -o addr show | awk '{print $4}'; done | sed 's|/.*||' | paste -sd ' ') "
    if [ -n "$want" ]; then
        last=${want##*.}
        if [ "${want%.*}" != "$net" ] || ! [[ $last =~ ^[0-9]{1,3}$ ]] || [ "$last" -lt 2 ] || [ "$last" -gt 254 ]; then
            die "move: $want is not an address in $net.2-254"
        fi
        [[ $used != *" $want "* ]] || die "move: $want is taken in the lab"
        new=$want
    else
        # The next free one: routers step by 10 (.11 -> .21), hosts by 1, skipping addresses
        # the lab already has.
        [ $dev = wan0 ] && step=10
        last=${cur##*.}
        for _ in $(seq 250); do
            last=$(( (last + step - 2) % 253 + 2 ))
            [[ $used == *" $net.$last "* ]] || break
        done
        new=$net.$last
    fi
    # The old address goes first: removing it flushes the masquerade entries made with it
    # (the kernel does that for a router), and for a host removes its routes, so the default
    # route is put back through the new address.
    in_ns "$h" ip addr del "$cur/24" dev $dev
    in_ns "$h" ip addr add "$new/24" dev $dev
    [ -z "$gw" ] || in_ns "$h" ip route replace default via "$gw"
    echo "$new"
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
case $cmd in
    up) need_root; cmd_up "$@" ;;
    down|status|exec|loss|move)
        need_root
        given=""
        if [ "${1:-}" = --prefix ]; then
            [ $# -ge 2 ] || usage
            given=$2
            shift 2
        fi
        resolve_prefix "$given"
        case $cmd in
            down) [ $# -eq 0 ] || usage; cmd_down_resolved; echo "netlab: $PREFIX is down" ;;
            status) [ $# -eq 0 ] || usage; cmd_status ;;
            loss)
                { [ $# -ge 1 ] && [ $# -le 2 ]; } || usage
                valid_loss "$1" || die "bad loss '$1' (a percentage 0-100, e.g. 5 or 2.5)"
                routers=(nat1 nat2)
                if [ $# -eq 2 ]; then
                    [[ $2 == nat1 || $2 == nat2 ]] || die "loss: a router, nat1 or nat2"
                    routers=("$2")
                fi
                for r in "${routers[@]}"; do
                    [ -e "/run/netns/$(ns "$r")" ] || die "lab $PREFIX has no namespace $(ns "$r")"
                    set_loss "$r" "$1" || die "loss: nftables refused the rule in $r"
                done ;;
            move) { [ $# -ge 1 ] && [ $# -le 2 ]; } || usage; cmd_move "$@" ;;
            exec)
                [ $# -ge 2 ] || usage
                [[ " ${HOSTS[*]} " == *" $1 "* ]] || die "no host '$1' (one of: ${HOSTS[*]})"
                [ -e "/run/netns/$(ns "$1")" ] || die "lab $PREFIX has no namespace $(ns "$1")"
                host=$1
                shift
                exec ip netns exec "$(ns "$host")" "$@" ;;
        esac ;;
    addr)
        [ $# -eq 1 ] && [ -n "${ADDR[$1]:-}" ] || die "addr: one of: ${!ADDR[*]}"
        echo "${ADDR[$1]}" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
