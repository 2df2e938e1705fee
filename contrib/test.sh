#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (unit, integration, fuzz corpora) under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the threaded parts under ThreadSanitizer
# (contrib/test-tsan.sh). Benchmarks are separate: contrib/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/install-deps.sh
bash contrib/build.sh --sanitize build-asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/contrib/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir build-asan -LE bench --output-on-failure -j "${PARLEY_JOBS:-2}" "$@"
# The threaded parts once more under ThreadSanitizer (PARLEY_TSAN=0 skips it).
if [ "${PARLEY_TSAN:-1}" != 0 ]; then
    bash contrib/test-tsan.sh build-tsan
fi
