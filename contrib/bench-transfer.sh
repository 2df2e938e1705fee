#!/usr/bin/env bash
# Files on loopback, everything in the same run: parley's transfer room (bench_transfer) against
# scp and rsync over ssh to 127.0.0.1 (an sshd started here on a loopback port, stopped after),
# `tar | ssh`, our raw QUIC stream and the TLS/TCP baseline (bench_links). Prints figures and
# ratios; docs/PERFORMANCE.md records them. Needs root for the packages (openssh, rsync).
# Usage: contrib/bench-transfer.sh [SIZE_MIB=2048] [FILES=20000] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-2048}
FILES=${2:-20000}
RUNS=${3:-3}
BUILD=${PARLEY_BUILD_DIR:-build}
[ -n "${PARLEY_BENCH_NO_BUILD:-}" ] || bash contrib/build.sh "$BUILD" >/dev/null
BIN=$PWD/$BUILD/bin
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || apt-get install -y openssh-server >/dev/null
command -v rsync >/dev/null 2>&1 || apt-get install -y rsync >/dev/null
WORK=$(mktemp -d /var/tmp/parley-bench-transfer.XXXXXX)
SSHD_PID=
cleanup() {
    [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== data: one file of $SIZE MiB, a folder of $FILES files of 4 KiB-1 MiB (in $WORK)"
head -c "$((SIZE << 20))" /dev/urandom >"$WORK/one.bin"
python3 - "$WORK/folder" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
for i in range(n):
    d = os.path.join(root, "d%d" % (i % 50))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%d" % i), "wb") as f:
        f.write(os.urandom(4096 << rng.randrange(9)))
PY
FOLDER_MIB=$(du -sm "$WORK/folder" | cut -f1)

# A private sshd on a loopback port with a throwaway host key and client key.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
chmod 600 "$WORK/authorized_keys"
mkdir -p /run/sshd
cat >"$WORK/sshd_config" <<CFG
ListenAddress 127.0.0.1:$PORT
HostKey $WORK/host_key
AuthorizedKeysFile $WORK/authorized_keys
PasswordAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $WORK/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
CFG
SSH_PROBE="ssh -p $PORT -i $WORK/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes root@127.0.0.1 true"
SSH="ssh -p $PORT -i $WORK/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
/usr/sbin/sshd -f "$WORK/sshd_config" -D -e 2>"$WORK/sshd.log" &
SSHD_PID=$!
for _ in $(seq 50); do
    $SSH_PROBE 2>/dev/null && break
    sleep 0.1
done

# seconds COMMAND...: wall time of one run, as a float.
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    if ! "$@" >/dev/null 2>"$WORK/last-error"; then
        echo "  failed: $* ($(head -c 300 "$WORK/last-error"))" >&2
        return 1
    fi
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "== one file of $SIZE MiB"
for tool in scp rsync; do
    for r in $(seq "$RUNS"); do
        rm -rf "$WORK/out"; mkdir -p "$WORK/out"; sync
        if [ "$tool" = scp ]; then
            seconds scp -q -P "$PORT" -i "$WORK/client_key" -o StrictHostKeyChecking=no \
                -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$WORK/one.bin" "root@127.0.0.1:$WORK/out/"
        else
            seconds rsync -a -e "$SSH" "$WORK/one.bin" "root@127.0.0.1:$WORK/out/"
        fi
    done | median | awk -v s="$SIZE" -v t="$tool" '{printf "  %s: median %.0f MiB/s (%.2f s)\n", t, s/$1, $1}'
done
"$BIN/bench_transfer" --file "$WORK/one.bin" --folder "$WORK/folder" "$RUNS"
echo "  our raw QUIC stream and TLS/TCP, same size:"
"$BIN/bench_links" 0 0 "$SIZE" 0 "$RUNS" | sed 's/^/  /'

echo "== a folder of $FILES files ($FOLDER_MIB MiB)"
for tool in rsync tar-ssh; do
    for r in $(seq "$RUNS"); do
        rm -rf "$WORK/out"; mkdir -p "$WORK/out"; sync
        if [ "$tool" = rsync ]; then
            seconds rsync -a -e "$SSH" "$WORK/folder" "root@127.0.0.1:$WORK/out/"
        else
            seconds sh -c "tar -C '$WORK' -cf - folder | $SSH root@127.0.0.1 tar -C '$WORK/out' -xf -"
        fi
    done | median | awk -v n="$FILES" -v m="$FOLDER_MIB" -v t="$tool" \
        '{printf "  %s: median %.0f files/s, %.0f MiB/s (%.2f s)\n", t, n/$1, m/$1, $1}'
done
