#!/usr/bin/env bash
# The one script a GPU session runs (DESIGN.md §8): build the CUDA backend, run the `cuda` tests,
# the kernel benchmarks and a short AlexNet-13 training timing, within a time budget (default
# 470 s, under 8 minutes on an H100 from a fresh machine). Everything goes to $OUT: summary.txt
# (what ran, what failed, the key figures), env.log (nvidia-smi) and one log per step (at most 8
# files in all, so the whole folder can be fetched back from a lent GPU machine).
#
# On a GPU machine without the Debian -dev packages (and no way to install them): make the bundle
# on a development machine first (--make-bundle), copy build-gpu-bundle/dropnet-gpu.tar.xz into
# the checkout there, and run tools/gpu-check.sh (it picks the bundle up).
#
#   tools/gpu-check.sh                       configure + build (Ninja, CUDA on, sm_90) in build-gpu-check/
#   tools/gpu-check.sh --build-dir DIR       use an existing CUDA build directory (no build)
#   tools/gpu-check.sh --bundle-file FILE    use a prebuilt bundle made by --make-bundle (no build);
#                                            build-gpu-bundle/dropnet-gpu.tar.xz is used when present
#   tools/gpu-check.sh --make-bundle         (on a machine with the Debian packages, no GPU needed)
#                                            build the binaries with MPI/NCCL off and a generic CPU
#                                            target, and pack them with the non-system shared
#                                            libraries they need into build-gpu-bundle/dropnet-gpu.tar.xz
#                                            (git-ignored; carry it to the GPU machine)
# Environment: OUT (default /tmp/dropnet-gpu-check), GPU_CHECK_BUDGET (seconds, default 470),
# GPU_CHECK_TRAIN_ITERS (default 200), GPU_CHECK_BENCH_MIN_TIME (default 0.05), GPU_CHECK_E2E_ITERS
# (default 30: bench/e2e_vs_pytorch.sh, dropnet native / cuDNN vs PyTorch, when time is left).
# Exit status: 0 all steps passed, 1 a step failed, 3 the build is impossible here (missing
# headers or libraries, listed in summary.txt).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORIG_LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"  # for PyTorch, which must not load the bundle's libraries
OUT="${OUT:-/tmp/dropnet-gpu-check}"
BUDGET="${GPU_CHECK_BUDGET:-470}"
TRAIN_ITERS="${GPU_CHECK_TRAIN_ITERS:-200}"
MIN_TIME="${GPU_CHECK_BENCH_MIN_TIME:-0.05}"
BUILD=""
BUNDLE_FILE=""
MAKE_BUNDLE=0
DEFAULT_BUNDLE="$ROOT/build-gpu-bundle/dropnet-gpu.tar.xz"

while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) BUILD="$(cd "$2" && pwd)" || exit 2; shift 2 ;;
    --bundle-file) BUNDLE_FILE="$2"; shift 2 ;;
    --make-bundle) MAKE_BUNDLE=1; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu-check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# Binaries the check needs (tests: every tests/cuda_*.cpp but the emulator's own).
cuda_tests() {
  for f in "$ROOT"/tests/cuda_*.cpp; do
    case "$f" in */cuda_emulator*) continue ;; esac
    [ -e "$f" ] && basename "$f" .cpp
  done
}
BENCHES=(bench_gemm_cuda bench_conv_cuda bench_memory_cuda)
TOOLS=(dropnet-train dropnet-time dropnet-summary)

pick_generator() {
  if command -v ninja >/dev/null 2>&1; then echo "Ninja"; else echo "Unix Makefiles"; fi
}

# cuDNN: the toolkit's, else the pip wheel's (nvidia-cudnn-cu13, as on the GPU image).
cudnn_dir_from_python() {
  command -v python3 >/dev/null 2>&1 || return 1
  python3 - <<'EOF' 2>/dev/null
import importlib, os
m = importlib.import_module("nvidia.cudnn")
d = getattr(m, "__file__", None)
d = os.path.dirname(d) if d else list(m.__path__)[0]
print(d)
EOF
}

find_cudnn_lib_dir() {
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libcudnn.so.9" ] && { echo "$d"; return 0; }
  done
  local p
  p="$(cudnn_dir_from_python)" && [ -e "$p/lib/libcudnn.so.9" ] && { echo "$p/lib"; return 0; }
  return 1
}

# ---- --make-bundle ---------------------------------------------------------------------------
if [ "$MAKE_BUNDLE" = 1 ]; then
  set -e
  bdir="$ROOT/build-gpu-bundle/build"
  stage="$ROOT/build-gpu-bundle/stage"
  gen="$(pick_generator)"
  cmake -S "$ROOT" -B "$bdir" -G "$gen" -DCMAKE_BUILD_TYPE=Release -DDROPNET_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DDROPNET_MPI=OFF -DDROPNET_NCCL=OFF -DDROPNET_NATIVE=OFF
  mapfile -t tests < <(cuda_tests)
  cmake --build "$bdir" -j "${GPU_CHECK_JOBS:-2}" --target "${tests[@]}" "${BENCHES[@]}" "${TOOLS[@]}"
  rm -rf "$stage"
  mkdir -p "$stage/bin" "$stage/lib"
  for t in "${tests[@]}"; do cp "$bdir/tests/$t" "$stage/bin/"; done
  for b in "${BENCHES[@]}"; do cp "$bdir/bench/$b" "$stage/bin/"; done
  for t in "${TOOLS[@]}"; do cp "$bdir/tools/$t" "$stage/bin/"; done
  # Shared libraries that the GPU image does not have: everything except glibc, the compiler
  # runtime, and the CUDA / cuDNN libraries (taken from the GPU machine's own toolkit).
  skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcudnn|libnccl|libnvidia)'
  for b in "$stage"/bin/*; do
    ldd "$b" | awk '/=> \//{print $1, $3}' | while read -r name path; do
      echo "$name" | grep -Eq "$skip" && continue
      [ -e "$stage/lib/$name" ] || cp -L "$path" "$stage/lib/$name"
    done
  done
  git -C "$ROOT" describe --always --dirty > "$stage/COMMIT" 2>/dev/null || true
  tar -C "$stage" -cJf "$DEFAULT_BUNDLE" .
  echo "gpu-check.sh: wrote $DEFAULT_BUNDLE ($(du -h "$DEFAULT_BUNDLE" | cut -f1)); libraries: $(ls "$stage/lib" | tr '\n' ' ')"
  exit 0
fi

# ---- the check ---------------------------------------------------------------------------------
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
START=$SECONDS
FAILED=()

say() { echo "$*" | tee -a "$SUMMARY"; }
remaining() { echo $((BUDGET - (SECONDS - START))); }

# run_step NAME LIMIT CMD...: runs CMD under `timeout` (LIMIT seconds, cut to what the budget has
# left), output to $OUT/NAME.log (appended), one status line in the summary.
run_step() {
  local name=$1 limit=$2
  shift 2
  local rem=$(($(remaining) - 10))
  if [ "$rem" -lt 15 ]; then
    say "[SKIP] $name: the ${BUDGET}s budget is used up"
    FAILED+=("$name (skipped: no time left)")
    return 1
  fi
  [ "$limit" -gt "$rem" ] && limit=$rem
  local t0=$SECONDS rc log="$OUT/${STEP_LOG:-$name}.log"  # STEP_LOG: share another step's log
  echo "\$ $*" >> "$log"
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    say "[ OK ] $name ($((SECONDS - t0)) s)"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    say "[FAIL] $name: timed out after ${limit} s (log: ${STEP_LOG:-$name}.log)"
    FAILED+=("$name (timeout)")
  else
    say "[FAIL] $name: exit status $rc after $((SECONDS - t0)) s (log: ${STEP_LOG:-$name}.log)"
    FAILED+=("$name (exit $rc)")
  fi
  return "$rc"
}

finish() {
  say ""
  say "total $((SECONDS - START)) s of a ${BUDGET} s budget"
  if [ ${#FAILED[@]} -eq 0 ]; then
    say "RESULT: all steps passed"
    exit 0
  fi
  say "RESULT: FAILED: ${FAILED[*]}"
  exit "${1:-1}"
}

export PATH="/usr/local/cuda/bin:$PATH"
say "dropnet gpu-check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), checkout $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
GPU_PRESENT=0
GPU_COUNT=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  GPU_PRESENT=1
  GPU_COUNT=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader \
    2>&1 | sed 's/^/gpu: /' | tee -a "$SUMMARY"
  nvidia-smi > "$OUT/env.log" 2>&1
else
  say "gpu: none (nvidia-smi missing or lists no GPU)"
fi
command -v nvcc >/dev/null 2>&1 && say "nvcc: $(nvcc --version | tail -1)"

# ---- build (or a prebuilt build directory / bundle) ------------------------------------------
USE_CTEST=0
if [ -z "$BUILD" ] && [ -z "$BUNDLE_FILE" ] && [ -e "$DEFAULT_BUNDLE" ]; then BUNDLE_FILE="$DEFAULT_BUNDLE"; fi
if [ -n "$BUNDLE_FILE" ]; then
  BUILD=/tmp/dropnet-gpu-bundle
  rm -rf "$BUILD" && mkdir -p "$BUILD"
  if ! tar -C "$BUILD" -xJf "$BUNDLE_FILE"; then
    say "[FAIL] bundle: cannot unpack $BUNDLE_FILE"
    FAILED+=("bundle")
    finish 1
  fi
  say "build: prebuilt bundle $BUNDLE_FILE (commit $(cat "$BUILD/COMMIT" 2>/dev/null || echo '?'))"
  BIN_TESTS="$BUILD/bin" BIN_BENCH="$BUILD/bin" BIN_TOOLS="$BUILD/bin"
  export LD_LIBRARY_PATH="$BUILD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
elif [ -n "$BUILD" ]; then
  say "build: using the build directory $BUILD"
  BIN_TESTS="$BUILD/tests" BIN_BENCH="$BUILD/bench" BIN_TOOLS="$BUILD/tools"
  # ctest only works in a build tree configured from this checkout (its files hold absolute paths).
  home="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)"
  [ "$home" = "$ROOT" ] && USE_CTEST=1
else
  BUILD="$ROOT/build-gpu-check"
  BIN_TESTS="$BUILD/tests" BIN_BENCH="$BUILD/bench" BIN_TOOLS="$BUILD/tools"
  USE_CTEST=1
  # Dependencies the GPU image may lack (it cannot install packages): check before configuring.
  missing=()
  for h in yaml-cpp/yaml.h spdlog/spdlog.h fmt/format.h gtest/gtest.h benchmark/benchmark.h zlib.h; do
    echo "#include <$h>" | c++ -std=c++20 -E -x c++ - >/dev/null 2>&1 || missing+=("<$h>")
  done
  cblas=0
  for d in /usr/include /usr/include/openblas /usr/include/x86_64-linux-gnu/openblas-pthread /usr/local/include; do
    [ -e "$d/cblas.h" ] && cblas=1
  done
  [ "$cblas" = 1 ] || missing+=("<cblas.h> (OpenBLAS)")
  command -v cmake >/dev/null 2>&1 || missing+=("cmake")
  command -v nvcc >/dev/null 2>&1 || missing+=("nvcc")
  if [ ${#missing[@]} -gt 0 ]; then
    say "[FAIL] build: cannot build here, missing: ${missing[*]}"
    say "       (Debian: tools/setup.sh installs them; on a machine without package access run"
    say "        'tools/gpu-check.sh --make-bundle' where they exist and carry build-gpu-bundle/dropnet-gpu.tar.xz)"
    FAILED+=("build (missing dependencies)")
    finish 3
  fi
  # MPI + NCCL only where the 2-GPU NCCL smoke test can run (2 GPUs, mpirun): they are optional.
  mpi_nccl=(-DDROPNET_MPI=OFF -DDROPNET_NCCL=OFF)
  [ "$GPU_COUNT" -ge 2 ] && command -v mpirun >/dev/null 2>&1 && mpi_nccl=(-DDROPNET_MPI=AUTO -DDROPNET_NCCL=AUTO)
  cmake_args=(-S "$ROOT" -B "$BUILD" -G "$(pick_generator)" -DCMAKE_BUILD_TYPE=Release -DDROPNET_CUDA=ON
    -DCMAKE_CUDA_ARCHITECTURES=90 "${mpi_nccl[@]}")
  if [ ! -e /usr/local/cuda/include/cudnn.h ] && p="$(cudnn_dir_from_python)" && [ -e "$p/include/cudnn.h" ]; then
    lib="$(find "$p/lib" -maxdepth 1 -name 'libcudnn.so*' 2>/dev/null | sort | head -1)"
    [ -n "$lib" ] && cmake_args+=(-DCUDNN_INCLUDE_DIR="$p/include" -DCUDNN_LIBRARY="$lib")
  fi
  mapfile -t tests < <(cuda_tests)
  if ! run_step build 300 cmake "${cmake_args[@]}" ||
    ! run_step build 300 cmake --build "$BUILD" -j 16 --target "${tests[@]}" "${BENCHES[@]}" "${TOOLS[@]}"; then
    finish 1
  fi
  grep -E "dropnet: CUDA=" "$OUT/build.log" | tail -1 | sed 's/^-- /build: /' | tee -a "$SUMMARY"
fi

# The loader: the toolkit's libraries; anything still missing (cuDNN, cuBLAS on an image that has
# them only as pip wheels) is looked up in the toolkit folders and the `nvidia` wheels.
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64"
pip_nvidia_lib_dirs() {
  command -v python3 >/dev/null 2>&1 || return 0
  python3 -c 'import nvidia, os; [print(os.path.join(p, d, "lib")) for p in nvidia.__path__ for d in sorted(os.listdir(p))]' \
    2>/dev/null
}
find_lib_dir() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $(pip_nvidia_lib_dirs); do
    [ -e "$d/$1" ] && { echo "$d"; return 0; }
  done
  return 1
}
resolve_libs() {
  local bin=$1 name d missing=()
  [ -x "$bin" ] || return 0
  for _ in 1 2 3; do
    mapfile -t missing < <(ldd "$bin" 2>/dev/null | awk '/not found/ {print $1}' | sort -u)
    [ ${#missing[@]} -eq 0 ] && return 0
    for name in "${missing[@]}"; do
      if d="$(find_lib_dir "$name")" && [[ ":$LD_LIBRARY_PATH:" != *":$d:"* ]]; then
        export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
        say "loader: $name from $d"
      fi
    done
  done
  say "loader: $(basename "$bin") still misses ${missing[*]} (it will not start)"
}
resolve_libs "$BIN_TOOLS/dropnet-train"
resolve_libs "$BIN_BENCH/bench_conv_cuda"
resolve_libs "$BIN_TESTS/cuda_conv"
export DROPNET_SOURCE_DIR="$ROOT"

# ---- tests -------------------------------------------------------------------------------------
say ""
if [ "$USE_CTEST" = 1 ]; then
  # Every gtest case is one ctest test (one process each): run 8 at a time. -V keeps the tests'
  # own figures (the net test's loss curves) in the log.
  run_step tests 200 ctest --test-dir "$BUILD" -L cuda -j 8 -V --output-on-failure --timeout 150
  grep -E "tests passed|tests failed" "$OUT/tests.log" | tail -1 | sed 's/^/tests: /' | tee -a "$SUMMARY"
  skipped=$(sed -n '/The following tests did not run/,/^$/p' "$OUT/tests.log" | grep -c 'Skipped')
  [ "$skipped" -gt 0 ] && say "tests: $skipped skipped (a cuda test skips only without a usable device)"
  sed -n '/The following tests FAILED/,$p' "$OUT/tests.log" | grep -E '^\s+[0-9]+ - ' | sed 's/^\s*/  failed: /' |
    tee -a "$SUMMARY"
else
  # No usable ctest tree: run each test binary (cwd = the build dir, as ctest would).
  run_step tests 200 bash -c '
    rc=0
    for t in "$0"/cuda_*; do
      [ -x "$t" ] || continue
      echo "=== $(basename "$t")"
      (cd "$1" && timeout 150 "$t" --gtest_color=no) || rc=1
    done
    exit $rc' "$BIN_TESTS" "$BUILD"
  passed=$(grep -hE '^\[  PASSED  \] [0-9]+ test' "$OUT/tests.log" | awk '{s += $4} END {print s + 0}')
  skipped=$(grep -hE '^\[  SKIPPED \] [0-9]+ test' "$OUT/tests.log" | awk '{s += $4} END {print s + 0}')
  say "tests: $passed passed, $(grep -cE '^\[  FAILED  \] [^0-9]' "$OUT/tests.log") failed, $skipped skipped"
  grep -E '^\[  FAILED  \] [A-Za-z]' "$OUT/tests.log" | sort -u | sed 's/^/  failed: /' | tee -a "$SUMMARY"
fi
if [ "${skipped:-0}" -gt 0 ] && [ "$GPU_PRESENT" = 1 ]; then
  say "[FAIL] tests: $skipped cuda tests skipped although nvidia-smi lists a GPU (the device is not usable)"
  FAILED+=("tests skipped")
fi
grep -hoE 'engine (native|cublas|cudnn): loss.*' "$OUT/tests.log" | sort -u | sed 's/^/  net: /' | tee -a "$SUMMARY"

# ---- two GPUs: NCCL data parallelism -----------------------------------------------------------
# Two ranks, one GPU each, 20 iterations of LeNet on synthetic data: init, the broadcast and the
# gradient all-reduces through NCCL (the emulated build checks the same against the CPU in CI).
if [ "$GPU_COUNT" -ge 2 ] && command -v mpirun >/dev/null 2>&1 &&
  grep -q "NCCL=TRUE" "$OUT/build.log" 2>/dev/null; then
  STEP_LOG=tests run_step nccl_2gpu 60 mpirun --allow-run-as-root --oversubscribe -np 2 \
    "$BIN_TOOLS/dropnet-train" "$ROOT/configs/lenet.yaml" --device cuda --force --out /tmp/dropnet-gpu-check-nccl \
    "data.train={source: synthetic, shape: [1, 28, 28], num_classes: 10, num_samples: 512, batch_size: 64}" \
    "data.test={source: synthetic, shape: [1, 28, 28], num_classes: 10, num_samples: 64, batch_size: 64}" \
    solver.max_iter=20 solver.test_interval=0 solver.snapshot=0 solver.display=10
  if grep -q "x 2 ranks (nccl)" "$OUT/tests.log"; then say "nccl: 2 ranks on 2 GPUs trained 20 iterations"
  else say "[FAIL] nccl: the 2-rank run did not use NCCL on 2 GPUs"; FAILED+=("nccl_2gpu"); fi
else
  say "[SKIP] nccl_2gpu: needs 2 GPUs, mpirun and a build with NCCL (this machine: $GPU_COUNT GPU(s))"
fi

# ---- kernel benchmarks -------------------------------------------------------------------------
say ""
run_step bench_gemm_cuda 45 "$BIN_BENCH/bench_gemm_cuda" --benchmark_min_time="$MIN_TIME"
grep -E '^gemm_cuda/' "$OUT/bench_gemm_cuda.log" | awk '{printf "  %-36s %s %s\n", $1, $2, $NF}' | tee -a "$SUMMARY"
run_step bench_conv_cuda 150 "$BIN_BENCH/bench_conv_cuda" --benchmark_min_time="$MIN_TIME"
sed -n '/^conv summary/,$p' "$OUT/bench_conv_cuda.log" | sed 's/^/  /' | tee -a "$SUMMARY"
# Tensor cores: AlexNet-13's duplicated convs at TF32, the native mma kernels next to cuDNN's tensor-op math.
STEP_LOG=bench_conv_cuda run_step bench_conv_tf32 60 "$BIN_BENCH/bench_conv_cuda" --nets=alexnet13 --engines=native,cudnn \
  --precision=tf32 --benchmark_min_time="$MIN_TIME"
sed -n '/^conv summary/,$p' "$OUT/bench_conv_cuda.log" | tail -n +2 | sed -n '/^conv summary/,$p' | sed 's/^/  tf32 /' | tee -a "$SUMMARY"
run_step bench_memory_cuda 45 "$BIN_BENCH/bench_memory_cuda" --benchmark_min_time="$MIN_TIME"
grep -E '^bench_memory_cuda:' "$OUT/bench_memory_cuda.log" | sed 's/^/  /' | tee -a "$SUMMARY"
sed -n '/^memory summary/,$p' "$OUT/bench_memory_cuda.log" | sed 's/^/  /' | tee -a "$SUMMARY"

# ---- training timing ---------------------------------------------------------------------------
say ""
RUN_DIR=/tmp/dropnet-gpu-check-train
rm -rf "$RUN_DIR"
if [ -e "$ROOT/configs/alexnet13.yaml" ]; then
  net=alexnet13
  overrides=(
    "data.train={source: synthetic, shape: [3, 256, 256], num_classes: 1000, num_samples: 1024, batch_size: 256, crop: 227, mirror: true, mean: [104, 117, 123], shuffle: true}"
    "data.test={source: synthetic, shape: [3, 227, 227], num_classes: 1000, num_samples: 100, batch_size: 50}")
else
  net=lenet
  overrides=(
    "data.train={source: synthetic, shape: [1, 28, 28], num_classes: 10, num_samples: 1024, batch_size: 64, scale: 0.00390625, shuffle: true}"
    "data.test={source: synthetic, shape: [1, 28, 28], num_classes: 10, num_samples: 100, batch_size: 100}")
fi
overrides+=("solver.max_iter=$TRAIN_ITERS" "solver.test_interval=0" "solver.test_iter=0" "solver.snapshot=0"
  "solver.display=20")
run_step train 180 "$BIN_TOOLS/dropnet-train" "$ROOT/configs/$net.yaml" "${overrides[@]}" --device cuda \
  --force --out "$RUN_DIR" --progress log
if [ -e "$RUN_DIR/metrics.jsonl" ] && command -v python3 >/dev/null 2>&1; then
  python3 - "$RUN_DIR/metrics.jsonl" "$net" <<'EOF' | tee -a "$SUMMARY" | tee -a "$OUT/train.log"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
train = [r for r in recs if r.get("kind") == "train"]
def val(r, k):
    v = r.get(k)
    if v is None and isinstance(r.get("values"), dict): v = r["values"].get(k)
    return v
steady = [r for r in train if (r.get("iter") or 0) >= 40] or train
ips = [val(r, "images_per_s") for r in steady if val(r, "images_per_s")]
wait = [val(r, "data_wait_s") for r in steady if val(r, "data_wait_s") is not None]
last = train[-1] if train else {}
print(f"train: {sys.argv[2]} on synthetic data, {len(train)} display records, last iteration {last.get('iter')}, "
      f"loss {val(last, 'loss')}")
if ips:
    print(f"train: {sum(ips) / len(ips):.0f} img/s (mean over iterations >= 40; min {min(ips):.0f}, max {max(ips):.0f})"
          + (f", data wait {sum(wait):.2f} s in those windows" if wait else ""))
EOF
else
  grep -E 'img/s' "$OUT/train.log" | tail -3 | sed 's/^/  /' | tee -a "$SUMMARY"
fi

# ---- measured next to modelled (tools/perf_model.h): every layer of the fully grown net ---------
say ""
gpu_model=h100
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -qi h200 && gpu_model=h200
STEP_LOG=train run_step time_vs_model 120 "$BIN_TOOLS/dropnet-time" "$ROOT/configs/$net.yaml" "${overrides[@]:0:2}" \
  --device cuda --iterations 10 --at-iter 1000000 --model "$gpu_model"
sed -n '/^modelled on/,/^measured:/p' "$OUT/train.log" | sed 's/^/  /' | tee -a "$SUMMARY"

# ---- end to end against PyTorch (same GPU, same run; logged into train.log: $OUT keeps 8 files) --
say ""
if command -v python3 >/dev/null 2>&1 && LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" python3 -c "import torch, yaml" 2>/dev/null; then
  PYTHON_LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" STEP_LOG=train run_step e2e_vs_pytorch 240 bash "$ROOT/bench/e2e_vs_pytorch.sh" --tools "$BIN_TOOLS" \
    --iters "${GPU_CHECK_E2E_ITERS:-30}" --warmup 10
  sed -n '/^end to end/,$p' "$OUT/train.log" | sed 's/^/  /' | tee -a "$SUMMARY"
  # The same at TF32 (dropnet `precision: tf32`, PyTorch with TF32 on), AlexNet-13 only.
  PYTHON_LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" STEP_LOG=train run_step e2e_vs_pytorch_tf32 120 bash "$ROOT/bench/e2e_vs_pytorch.sh" \
    --tools "$BIN_TOOLS" --nets alexnet13 --precision tf32 --iters "${GPU_CHECK_E2E_ITERS:-30}" --warmup 10
  sed -n '/^end to end (cuda, tf32/,$p' "$OUT/train.log" | sed 's/^/  /' | tee -a "$SUMMARY"
else
  say "[SKIP] e2e_vs_pytorch: python3 with torch and yaml is not available"
fi

finish 1
