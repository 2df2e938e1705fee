#!/usr/bin/env bash
# A folder received into a destination that does not tell case apart, with the real `parley`
# binary: bob accepts alice's share into a case-insensitive FUSE file system (casefold_fs.py
# beside this script, fusepy on libfuse2, like vfat: no hard links, no renameat2 flags). The
# folder holds two pairs of names that differ only by case ("Readme.txt"/"README.txt",
# "Straße.txt"/"STRASSE.txt", the second by full case folding), a file "photos" beside a folder
# "Photos", two distinct Greek names and a 3 MiB file. Checked with sha256sum and find:
#   1. one of each colliding pair arrives with its own content, the other is skipped with the
#      reason (`transfers --json` problems and the stderr of `accept --wait`); the rest arrives,
#      with modes and times; each file is put in place without renameat2 flags or hard links;
#   2. nothing is overwritten: a folder "CASE" already in the destination makes the offer's
#      "case" arrive as "case (2)"; no partial or probe file is left behind;
#   3. the control: the same folder accepted into a plain (case-sensitive) folder arrives whole.
# Skipped (77) unless root, fusepy importable (Debian: python3-fusepy) and a FUSE mount works.
# Usage: test_transfer_casefold.sh PATH_TO_PARLEY
set -u
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PARLEY=${1:?usage: test_transfer_casefold.sh PATH_TO_PARLEY}
FS_PY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/casefold_fs.py"
export LC_ALL=C.UTF-8
started=$SECONDS

# --- preconditions -----------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip "needs root to mount a FUSE file system"
PY=
for p in /usr/bin/python3 python3; do # Debian's fusepy is not in a pyenv's python3
    if "$p" -c 'try: from fusepy import FUSE
except ImportError: from fuse import FUSE' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || skip "no fusepy (contrib/install-deps.sh installs python3-fusepy)"
{ [ -c /dev/fuse ] && : <>/dev/fuse; } 2>/dev/null || skip "/dev/fuse cannot be opened"

# mounted DIR: a file system is mounted on DIR (from /proc/mounts: no stat that could hang).
mounted() { grep -qs " $1 fuse" /proc/mounts; }
# What runs killed outright (SIGKILL on a CTest timeout) left: their mount and daemons, if
# their shell, the pid in the folder's name, is gone.
grep -oE "^casefold /tmp/parley-casefold\.[0-9]+\.[^ ]+/mnt " /proc/mounts | cut -d' ' -f2 |
while read -r m; do
    pid=${m#/tmp/parley-casefold.}
    kill -0 "${pid%%.*}" 2>/dev/null && continue
    stop_daemons "${m%/mnt}/seed" "${m%/mnt}/alice" "${m%/mnt}/bob"
    umount -l "$m" && rm -rf "${m%/mnt}"
done

WORK=$(mktemp -d "/tmp/parley-casefold.$$.XXXXXX")
NET=$(( (RANDOM << 15 | RANDOM) + 1 ))
S="$WORK/seed"
A="$WORK/alice"
B="$WORK/bob"
DATA="$WORK/data"
SRC="$DATA/case"
BACKING="$WORK/backing" # what the FUSE file system shows on MNT
MNT="$WORK/mnt"
PLAIN="$WORK/plain"
FS_PID=

# unmount_fs: unmounts MNT and waits for the file system's process to end (SIGTERM, then
# SIGKILL if it does not). True if it ended.
unmount_fs() {
    if mounted "$MNT"; then
        umount "$MNT" 2>/dev/null || fusermount -u "$MNT" 2>/dev/null || umount -l "$MNT"
    fi
    [ -n "$FS_PID" ] || return 0
    wait_until 5 bash -c "! kill -0 $FS_PID" || kill -TERM "$FS_PID" 2>/dev/null
    wait_until 5 bash -c "! kill -0 $FS_PID" || { kill -KILL "$FS_PID" 2>/dev/null; return 1; }
    FS_PID=
}
cleanup() {
    # The daemons first: bob may have files open on the mount.
    stop_daemons "$S" "$A" "$B"
    unmount_fs
    mounted "$MNT" || rm -rf "$WORK"
}
trap cleanup EXIT

# --- the file system ---------------------------------------------------------------------------
mkdir -p "$BACKING" "$MNT"
# With libfuse's debug log (-d): which requests bob's daemon made, and their answers.
CASEFOLD_FS_DEBUG=1 "$PY" "$FS_PY" "$BACKING" "$MNT" >>"$WORK/fs.log" 2>&1 &
FS_PID=$!
if ! wait_until 10 mounted "$MNT"; then
    sed 's/^/  fs: /' "$WORK/fs.log" | head -5
    skip "cannot mount a FUSE file system here"
fi
# It does what it is for: a name found under another case, the same file under both.
echo probe >"$MNT/.Probe-Case"
if [ "$(stat -c %i "$MNT/.PROBE-CASE" 2>/dev/null)" = "$(stat -c %i "$MNT/.Probe-Case")" ] &&
    [ "$(ls -A "$BACKING")" = ".Probe-Case" ]; then pass; else fail "the FUSE file system is not case-insensitive"; fi
rm -f "$MNT/.probe-case"
# Already in the destination, under another case than the offer's top folder: the offer must
# not go into it.
mkdir "$MNT/CASE"
echo "was here first" >"$MNT/CASE/readme.TXT"

# --- helpers (the few of test_transfer.sh this test needs) ----------------------------------
expect_in() { # expect_in "description" FILE PATTERN (extended regex)
    if grep -qE -- "$3" "$2"; then pass; else fail "$1: '$3' not in:"; head -8 "$2" | sed 's/^/  /'; fi
}
same() { if [ "$2" = "$3" ]; then pass; else fail "$1: '$2' != '$3'"; fi; }
pa() { "$PARLEY" --profile "$A" "$@"; }
pb_() { "$PARLEY" --profile "$B" "$@"; }
field() { # field PROFILE ID KEY: that transfer's KEY in `transfers --json`
    "$PARLEY" --profile "$1" transfers --json 2>/dev/null | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["id"] == sys.argv[1]:
        print(t[sys.argv[2]])' "$2" "$3"
}
has_state() { [ "$(field "$1" "$2" state)" = "$3" ]; }
offered_to() { has_state "$1" "$2" offered; }
# problems PROFILE ID: that transfer's problems, one "path<TAB>reason" a line.
problems() {
    "$PARLEY" --profile "$1" transfers --json 2>/dev/null | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["id"] == sys.argv[1]:
        for p in t["problems"]:
            print(p["path"] + "\t" + p["reason"])' "$2"
}
sum_of() { sha256sum <"$1" 2>/dev/null | cut -d' ' -f1; }
log_tail() { # log_tail PROFILE: the last lines of its daemon.log about transfers
    echo "  --- $(basename "$1")/daemon.log (transfer lines, last 15):"
    grep -i "transfer\|chunk\|offer" "$1/daemon.log" | tail -15 | sed 's/^/  | /'
}
# share_and_accept DIR: alice shares SRC, bob accepts it with `--to DIR --wait`; sets ID,
# output of the accept in $WORK/out and $WORK/err.
share_and_accept() {
    ID=
    check "share case/" 0 pa share bob "$SRC"
    ID=$(head -1 "$WORK/out")
    if wait_until 30 offered_to "$B" "$ID"; then pass; else fail "bob never saw the offer"; log_tail "$B"; fi
    check "transfer accept --to $1 --wait" 0 pb_ transfer accept "$ID" --to "$1" --wait
}

# --- set-up: seed, alice and bob; alice and bob are contacts -----------------------------------
setup_contacts "casefold test"
echo "daemons up and contacts after $((SECONDS - started)) s"

mkdir -p "$SRC/Photos" "$SRC/ok"
echo "readme, title case" >"$SRC/Readme.txt"
echo "README, upper case" >"$SRC/README.txt"
echo "Straße, with sharp s" >"$SRC/Straße.txt"
echo "STRASSE, upper case" >"$SRC/STRASSE.txt"
echo "photos, a file" >"$SRC/photos"
head -c 20000 /dev/urandom >"$SRC/Photos/x.jpg"
echo "alpha" >"$SRC/ok/α.txt"
echo "omega" >"$SRC/ok/Ω.txt" # folds to ω: distinct from α
head -c $((3 << 20)) /dev/urandom >"$SRC/big.bin"
chmod 640 "$SRC/big.bin"
chmod 750 "$SRC/Photos"
touch -d '2001-02-03 04:05:06.123456789' "$SRC/big.bin" "$SRC/Photos/x.jpg" "$SRC/Photos"
FILES=9

# --- 1 and 2. into the case-insensitive file system ------------------------------------------
t0=$SECONDS
share_and_accept "$MNT"
CASE_ID=$ID
cp "$WORK/out" "$WORK/fuse.out"
cp "$WORK/err" "$WORK/fuse.err"
echo "accepted into the FUSE file system in $((SECONDS - t0)) s; accept --wait said:"
sed 's/^/  | /' "$WORK/fuse.out" "$WORK/fuse.err"
state=$(field "$B" "$CASE_ID" state)
echo "bob's state: '$state', reason '$(field "$B" "$CASE_ID" reason)'," \
    "$(field "$B" "$CASE_ID" "done") of $(field "$B" "$CASE_ID" bytes) bytes done"
same "bob's state with entries skipped" completed "$state"
expect_in "accept --wait ends with a summary" "$WORK/fuse.out" "^completed: case, $FILES files, "
if wait_until 20 has_state "$A" "$CASE_ID" completed; then pass; else
    fail "alice's side: '$(field "$A" "$CASE_ID" state)' ('$(field "$A" "$CASE_ID" reason)')"; fi
problems "$B" "$CASE_ID" >"$WORK/problems"
echo "bob's problems (transfers --json):"
sed 's/^/  | /' "$WORK/problems"
REASON="another entry has the same name but for case, and the destination folder does not tell case apart"
same "three entries skipped" 3 "$(wc -l <"$WORK/problems")"
same "every one for case" 3 "$(grep -cF "	$REASON" "$WORK/problems")"
# Each problem is also on the stderr of `accept --wait`.
while IFS=$'\t' read -r path why; do
    if grep -qxF "parley: $path: $why" "$WORK/fuse.err"; then pass; else
        fail "accept --wait did not say: parley: $path: $why"; fi
done <"$WORK/problems"

# Where the offer's "case" went: beside CASE, numbered.
same "the offer's folder, as CASE was there" "CASE
case (2)" "$(ls "$BACKING")"
ROOT="$BACKING/case (2)"
same "what was there before is untouched" "was here first" "$(cat "$BACKING/CASE/readme.TXT" 2>/dev/null)"
same "nothing else went into CASE" "readme.TXT" "$(ls -A "$BACKING/CASE")"
skipped() { grep -q "^case/$1[/	]" "$WORK/problems"; } # a folder: what is in it
# pair NAME1 NAME2: exactly one of the two is in ROOT (the backing folder: real names) with its
# own content, and the other one is the one skipped.
pair() {
    local kept
    kept=$("$PY" -c '
import os, sys, unicodedata
f = lambda s: unicodedata.normalize("NFC", s).casefold()
print(*[n for n in os.listdir(sys.argv[1]) if f(n) == f(sys.argv[2])], sep="/")' "$ROOT" "$1" 2>&1)
    case "$kept" in
    "$1" | "$2") pass ;;
    *) fail "$1 / $2: the destination has '$kept'"; return ;;
    esac
    local other=$1
    [ "$kept" = "$1" ] && other=$2
    if skipped "$other" && ! skipped "$kept"; then pass; else fail "$1 / $2: $kept arrived, but $other is not the one skipped"; fi
    if [ -d "$ROOT/$kept" ]; then
        same "sha256 of $kept/x.jpg" "$(sum_of "$SRC/$kept/x.jpg")" "$(sum_of "$ROOT/$kept/x.jpg")"
    else
        same "sha256 of $kept" "$(sum_of "$SRC/$kept")" "$(sum_of "$ROOT/$kept")"
    fi
    echo "  $1 / $2: $kept arrived, $other skipped"
}
pair Readme.txt README.txt
pair Straße.txt STRASSE.txt
pair photos Photos
for f in ok/α.txt ok/Ω.txt big.bin; do
    same "sha256 of $f" "$(sum_of "$SRC/$f")" "$(sum_of "$ROOT/$f")"
done
# Modes and modification times (to the nanosecond) came through the FUSE file system too.
for f in big.bin Photos/x.jpg Photos; do
    same "mode and time of $f" "$(stat -c '%a %.9Y' "$SRC/$f")" "$(stat -c '%a %.9Y' "$ROOT/$f" 2>&1)"
done
same "files in the destination" $((FILES - 3)) "$(find "$ROOT" -type f | wc -l)"
leftover=$(find "$BACKING" -name '*.parley-part' -o -name '.parley-Case-Probe-*' -o \
    -name '.PARLEY-CASE-PROBE-*' -o -name '.fuse_hidden*')
if [ -z "$leftover" ]; then pass; else fail "left in the destination: $leftover"; fi
# Each file was put in place the long way: renameat2(RENAME_NOREPLACE) is EINVAL on libfuse2
# (the kernel answers it), link() EPERM, then a rename() after a check. Only bob's daemon
# links or renames on the mount.
links=$(grep -c "opcode: LINK " "$WORK/fs.log")
refused=$(awk '/opcode: LINK /{link[$2] = 1} /error: -1 \(Operation not permitted\)/ && link[$2]{n++}
    END{print n + 0}' "$WORK/fs.log")
renames=$(grep -c "opcode: RENAME " "$WORK/fs.log")
echo "on the mount: $links link() (EPERM: $refused), $renames rename()"
same "a link() tried for each file" "$((FILES - 3)) $((FILES - 3))" "$links $refused"
same "a rename() for each file" "$((FILES - 3))" "$renames"
grep -i "transfer ${CASE_ID:0:8}" "$B/daemon.log" | grep -iv "progress" | tail -8 | sed 's/^/  bob.log | /'

# --- 3. the control: into a plain folder everything arrives ----------------------------------
share_and_accept "$PLAIN"
PLAIN_ID=$ID
expect_in "accept --wait into a plain folder" "$WORK/out" "^completed: case, $FILES files, "
if [ -s "$WORK/err" ]; then fail "accept --wait into a plain folder said:"; sed 's/^/  /' "$WORK/err"; else pass; fi
same "bob's state (plain)" completed "$(field "$B" "$PLAIN_ID" state)"
same "no problems (plain)" "" "$(problems "$B" "$PLAIN_ID")"
if diff -r "$SRC" "$PLAIN/case" >"$WORK/diff" 2>&1; then pass; else fail "the plain copy differs:"; head -8 "$WORK/diff"; fi
modes_times() { (cd "$1" && find . -printf '%p %m %T@\n' | sort); }
same "modes and times (plain)" "$(modes_times "$SRC")" "$(modes_times "$PLAIN/case")"
same "files in the plain folder" "$FILES" "$(find "$PLAIN/case" -type f | wc -l)"
leftover=$(find "$PLAIN" -name '.*')
if [ -z "$leftover" ]; then pass; else fail "left in the plain folder: $leftover"; fi

# --- the end -----------------------------------------------------------------------------------
down_and_check_logs "$A" "$B" "$S"
if unmount_fs && ! mounted "$MNT"; then pass; else fail "the FUSE file system did not end on umount"; fi
if grep -q "Traceback\|Uncaught\|critical" "$WORK/fs.log"; then
    fail "the FUSE file system reported errors:"
    head -20 "$WORK/fs.log" | sed 's/^/  fs: /'
else
    pass
fi
summary "transfer casefold" "$((SECONDS - started)) s"
