#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer (CUDA and MPI off, no
# benches). Usage: tools/sanitize.sh [BUILD_DIR] [extra ctest args]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$here/build-asan}"
shift || true
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDROPNET_SANITIZE=ON \
    -DDROPNET_CUDA=OFF -DDROPNET_MPI=OFF -DDROPNET_BUILD_BENCH=OFF
fi
cmake --build "$build" -j "$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The libFuzzer harness builds its own sanitized binary and the e2e/torch tests (whole trainings,
# every shipped config) run in the main suite: here the unit, gradcheck and fuzz labels.
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" -E "libfuzzer" -LE "e2e|torch" "$@"
