#!/usr/bin/env bash
# ThreadSanitizer run of the threaded parts: the UDP endpoint and its receive thread, the
# overlay's OpenDHT callbacks posting into the node thread (unit.dht, and the overlay and
# contact integration tests with real nodes), the transfer room's disk thread (two transfer
# integration tests), and the media engine's workers (unit.media).
# Usage: contrib/test-tsan.sh [BUILD_DIR]   (default build-tsan). contrib/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-tsan}
jobs=${PARLEY_JOBS:-2}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARLEY_TSAN=ON
fi
cmake --build "$build" -j "$jobs" --target unit_dht unit_media integration_tests
# OpenDHT and GnuTLS are not built with TSan: races inside them are not ours to report.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/contrib/tsan.supp}
ctest --test-dir "$build" --output-on-failure -j "$jobs" -E '^unit\.media\.cli$' \
    -R '^unit\.dht\.|^unit\.media\.|^integration\.(ten nodes|a graceful stop|A adds B|a folder tree arrives|a receiver that restarts)'
