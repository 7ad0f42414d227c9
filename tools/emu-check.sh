#!/usr/bin/env bash
# The CUDA backend on the emulated device (emu/, DROPNET_CUDA=EMU). CI runs `tsan` here and the
# ASan run through tools/sanitize.sh, whose build-asan is an emulated build too:
#   asan  the `cuda` and `emu` tests (the kernel-coverage test included) and the 2-rank emulated-NCCL
#         run, built with ASan + UBSan: the memcheck (an out-of-bounds device access is an ASan
#         report, a misaligned float4 a UBSan one). The three 60-iteration LeNet trainings
#         (CudaNet.LenetDropinTrainsLikeCpu) are left to `plain`: under ASan they alone take longer
#         than CI allows; the two-device training (CudaNetDevices) stays.
#   tsan  built with ThreadSanitizer: every emulated CUDA thread is its own TSan thread, so two
#         threads of a block touching the same memory between two barriers is a race report (the
#         racecheck). Run on what has block-shared memory (GEMM, implicit-GEMM conv, the reductions
#         of softmax / SGD / bias), the emulator's own tests and the racecheck's self-test.
#   plain all `cuda` and `emu` tests, no sanitizer (build-emu, what tools/setup.sh --build-dir
#         build-emu -- -DDROPNET_CUDA=EMU builds)
# Usage: tools/emu-check.sh [asan] [tsan] [plain]   (default: asan tsan). Extra ctest arguments go in
# DROPNET_EMU_CTEST_ARGS.
set -euo pipefail
njobs="$(nproc)"  # here: nproc counts OMP_NUM_THREADS, which the test runs below set to 1
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(asan tsan)

# Only what the emulated suite needs: the libraries, dropnet-train (the MPI test) and the
# cuda_/emu_/mpi_nccl test binaries.
targets=(dropnet-train)
for f in "$here"/tests/cuda_*.cpp "$here"/tests/emu_*.cpp "$here"/tests/mpi_nccl.cpp; do
  targets+=("$(basename "$f" .cpp)")
done

# Sanitizer builds at -O1 with line tables only (-g1): reports keep file:line, builds are faster.
light=("-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
tsan_targets=(cuda_emulator cuda_gemm cuda_conv cuda_softmax_sgd cuda_eltwise emu_gemm emu_conv_igemm
  cuda_emulator_mma cuda_gemm_mma cuda_conv_mma)
for mode in "${modes[@]}"; do
  selection=(-L "cuda|emu")
  mode_targets=("${targets[@]}")
  case "$mode" in
    asan) dir="$here/build-asan"; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "${light[@]}" -DDROPNET_SANITIZE=ON)
          selection+=(-E "CudaNet[.]LenetDropinTrainsLikeCpu") ;;
    tsan) dir="$here/build-emu-tsan"; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "${light[@]}" -DDROPNET_TSAN=ON -DDROPNET_MPI=OFF)
          mode_targets=("${tsan_targets[@]}")
          # Not the kernel-coverage fixture (this is a subset), nor the element-wise kernels, nor the
          # implicit-GEMM conv on AlexNet's conv1 shape (its backward data is ~300x its useful work:
          # minutes under TSan; the same kernels run on the other shapes).
          selection+=(-FA emu_launches -E "cuda_emu_kernel_coverage|CudaRelu|CudaDropout|CudaDropin|CudaResize|CudaLrn|CudaPool|CudaFusion|CudaNet|CudaHostStaging|alexnet_conv1_like_native") ;;
    plain) dir="$here/build-emu"; opts=(-DCMAKE_BUILD_TYPE=Release) ;;
    *) echo "emu-check.sh: unknown mode '$mode' (asan, tsan, plain)" >&2; exit 2 ;;
  esac
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S "$here" -B "$dir" -G Ninja -DDROPNET_CUDA=EMU -DDROPNET_BUILD_BENCH=OFF "${opts[@]}" >/dev/null
  fi
  build_targets=()
  for t in "${mode_targets[@]}"; do
    if ninja -C "$dir" -t query "$t" >/dev/null 2>&1; then build_targets+=("$t"); fi
  done
  cmake --build "$dir" -j "$njobs" --target "${build_targets[@]}"
  echo "== emulated device, $mode: ctest ${selection[*]} (and the emulated-NCCL mpi test where MPI is built)"
  (
    export OMP_NUM_THREADS=1  # the CPU references' OpenMP runtime is not instrumented for TSan
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    # atexit_sleep_ms=0: TSan's default second of sleep at the exit of every process that had threads
    # (each fiber is one) cost CI a second per test.
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:atexit_sleep_ms=0
    # shellcheck disable=SC2086
    ctest --test-dir "$dir" --output-on-failure --timeout 600 -j "$njobs" "${selection[@]}" ${DROPNET_EMU_CTEST_ARGS:-}
    if [ "$mode" != tsan ]; then
      # shellcheck disable=SC2086
      ctest --test-dir "$dir" --output-on-failure --timeout 600 -R "mpi_nccl_emulated" ${DROPNET_EMU_CTEST_ARGS:-}
    fi
  )
done
