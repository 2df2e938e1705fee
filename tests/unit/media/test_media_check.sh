#!/usr/bin/env bash
# `parley media-check` driven as a user would: exit codes, JSON, files for other tools.
set -euo pipefail
parley="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$parley" media-check --seconds 1 --loss 5 --json --out-audio "wav:$tmp/a.wav" \
      --out-video "ivf:$tmp/v.ivf") || fail "media-check exited $?"
python3 - "$out" <<'PY' || fail "bad JSON: $out"
import json, sys
j = json.loads(sys.argv[1])
assert j["audio"]["packets_sent"] == 50, j["audio"]
assert j["video"]["frames_sent"] == 30, j["video"]
assert j["video"]["shown_percent"] >= 90, j["video"]
assert abs(j["av_sync_ms"]) < 20, j
PY
"$parley" media-check --seconds 1 | grep -q "^audio" || fail "no human output"
"$parley" media-check --video testpattern:320x240@15 --seconds 1 --codec vp9 \
    --out-video "y4m:$tmp/v.y4m" >/dev/null || fail "vp9/y4m run failed"
if command -v vpxdec >/dev/null; then
    frames=$(vpxdec --i420 -o - "$tmp/v.ivf" 2>/dev/null | wc -c)
    shown=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['video']['frames_decoded'])" "$out")
    [ "$frames" -eq $((shown * 640 * 480 * 3 / 2)) ] || fail "vpxdec frames: $frames bytes for $shown"
fi
if command -v soxi >/dev/null; then
    [ "$(soxi -r "$tmp/a.wav")" = 48000 ] || fail "soxi rate"
fi
if command -v ffprobe >/dev/null; then
    [ "$(ffprobe -v error -show_entries stream=width,height -of csv=p=0 "$tmp/v.y4m")" = "320,240" ] \
        || fail "ffprobe size"
fi
set +e
"$parley" media-check --audio mic >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad source: not 2"
"$parley" media-check --loss 120 >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad loss: not 2"
"$parley" media-check --codec h264 >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad codec: not 2"
"$parley" media-check --out-video "ivf:$tmp/no/such/dir.ivf" >/dev/null 2>&1
[ $? -eq 1 ] || fail "unwritable sink: not 1"
msg=$("$parley" media-check --audio tone:abc 2>&1 >/dev/null)
echo "$msg" | grep -q "tone:HZ" || fail "message does not say what to do: $msg"
echo "media-check: ok"
