#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer, in one build: the CPU suite
# (unit, gradcheck, fuzz labels) and the CUDA backend on the emulated device (cuda, emu labels and
# the 2-rank emulated-NCCL run; emu/README.md) - the memcheck of the CUDA code. No benches.
# Usage: tools/sanitize.sh [BUILD_DIR] [extra ctest args]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$here/build-asan}"
shift || true
# -O1 -g1 (line tables): sanitizer reports keep file:line, the build takes far less than -O2 -g.
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DDROPNET_SANITIZE=ON \
    -DDROPNET_CUDA=EMU -DDROPNET_BUILD_BENCH=OFF
fi
# Only what runs below: the tools and every test binary but the e2e ones and the CPU MPI test
# (ctest lists those as <name>_NOT_BUILT, left out below).
targets=()
for f in "$here"/tools/dropnet-*.cpp "$here"/tests/*.cpp; do
  t="$(basename "$f" .cpp)"
  case "$t" in e2e_*|mpi_data_parallel) continue ;; esac
  if ninja -C "$build" -t query "$t" >/dev/null 2>&1; then targets+=("$t"); fi
done
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The libFuzzer harness builds its own sanitized binary and the e2e/torch tests (whole trainings,
# every shipped config) run in the main suite: here the unit, gradcheck and fuzz labels, with
# LeakSanitizer on.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
  ctest --test-dir "$build" --output-on-failure --timeout 600 -j "$(nproc)" -E "libfuzzer|_NOT_BUILT" -LE "e2e|torch|mpi|cuda|emu" "$@"
# The emulated device (leaks not checked: the emulator keeps destroyed events and streams, as a
# driver may, and MPI keeps its own). The three 60-iteration LeNet trainings on the emulated device
# (CudaNet.LenetDropinTrainsLikeCpu) are left to the plain emulated build (tools/emu-check.sh plain):
# under ASan they alone would take longer than CI allows; the two-device training stays.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1 OMP_NUM_THREADS=1 \
  ctest --test-dir "$build" --output-on-failure --timeout 600 -j "$(nproc)" -L "cuda|emu" -E "CudaNet[.]LenetDropinTrainsLikeCpu" "$@"
if ctest --test-dir "$build" -N -R mpi_nccl_emulated | grep -q "Total Tests: 1"; then
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1 \
    ctest --test-dir "$build" --output-on-failure --timeout 600 -R mpi_nccl_emulated "$@"
fi
