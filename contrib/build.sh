#!/usr/bin/env bash
# Configures and builds parley. Usage: contrib/build.sh [--sanitize] [BUILD_DIR]
# --sanitize builds with AddressSanitizer + UndefinedBehaviorSanitizer (what CI tests).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=OFF
if [ "${1:-}" = "--sanitize" ]; then
    sanitize=ON
    shift
fi
build=${1:-build}
jobs=${PARLEY_JOBS:-2}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARLEY_SANITIZE=$sanitize
fi
cmake --build "$build" -j "$jobs"
