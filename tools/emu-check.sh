#!/usr/bin/env bash
# The CUDA backend on the emulated device (emu/, DROPNET_CUDA=EMU), as CI runs it:
#   asan  every `cuda` and `emu` test (the coverage test included) and the 2-rank emulated-NCCL run,
#         built with ASan + UBSan: the memcheck (an out-of-bounds device access is an ASan report,
#         a misaligned float4 a UBSan one)
#   tsan  the `cuda` and `emu` tests built with ThreadSanitizer: every emulated CUDA thread is its
#         own TSan thread, so two threads of a block touching the same memory between two barriers
#         is a race report (the racecheck)
#   plain the same as asan without sanitizers (build-emu, what tools/setup.sh --build-dir build-emu
#         -- -DDROPNET_CUDA=EMU builds)
# Usage: tools/emu-check.sh [asan] [tsan] [plain]   (default: asan tsan). Extra ctest arguments go in
# DROPNET_EMU_CTEST_ARGS.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(asan tsan)

# Only what the emulated suite needs: the libraries, dropnet-train (the MPI test) and the
# cuda_/emu_/mpi_nccl test binaries.
targets=(dropnet-train)
for f in "$here"/tests/cuda_*.cpp "$here"/tests/emu_*.cpp "$here"/tests/mpi_nccl.cpp; do
  targets+=("$(basename "$f" .cpp)")
done

for mode in "${modes[@]}"; do
  case "$mode" in
    asan) dir="$here/build-emu-asan"; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DDROPNET_SANITIZE=ON) ;;
    tsan) dir="$here/build-emu-tsan"; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DDROPNET_TSAN=ON -DDROPNET_MPI=OFF) ;;
    plain) dir="$here/build-emu"; opts=(-DCMAKE_BUILD_TYPE=Release) ;;
    *) echo "emu-check.sh: unknown mode '$mode' (asan, tsan, plain)" >&2; exit 2 ;;
  esac
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S "$here" -B "$dir" -G Ninja -DDROPNET_CUDA=EMU -DDROPNET_BUILD_BENCH=OFF "${opts[@]}" >/dev/null
  fi
  build_targets=()
  for t in "${targets[@]}"; do
    if ninja -C "$dir" -t query "$t" >/dev/null 2>&1; then build_targets+=("$t"); fi
  done
  cmake --build "$dir" -j "$(nproc)" --target "${build_targets[@]}"
  echo "== emulated device, $mode: ctest -L 'cuda|emu|mpi' (the emulated-NCCL mpi test where MPI is built)"
  (
    export OMP_NUM_THREADS=1  # the CPU references' OpenMP runtime is not instrumented for TSan
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    # shellcheck disable=SC2086
    ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" -L "cuda|emu" ${DROPNET_EMU_CTEST_ARGS:-}
    if [ "$mode" != tsan ]; then
      # shellcheck disable=SC2086
      ctest --test-dir "$dir" --output-on-failure -R "mpi_nccl_emulated" ${DROPNET_EMU_CTEST_ARGS:-}
    fi
  )
done
