#!/usr/bin/env bash
# Two MPI ranks, each on its own emulated GPU (local rank 0 -> cuda:0, 1 -> cuda:1) with the
# emulated NCCL (over MPI), train a small DropIn net 20 iterations; the parameters must match the
# same 2-rank run on the CPU (MPI all-reduce) within float tolerance. Label mpi, emulated build only.
# usage: mpi_nccl_emu.sh MPIEXEC DROPNET_TRAIN WORK_DIR
set -euo pipefail
mpiexec=$1 train=$(realpath "$2") work=$3
source "$(dirname "${BASH_SOURCE[0]}")/mpi_common.sh"
rm -rf "$work"
mkdir -p "$work"
cat >"$work/dp.yaml" <<'YAML'
name: dp
seed: 5
data:
  train: {source: synthetic, shape: [1, 12, 12], num_classes: 5, num_samples: 96, batch_size: 8, scale: 0.0039}
solver: {base_lr: 0.02, momentum: 0.9, weight_decay: 0.001, max_iter: 20, display: 5, snapshot: 20,
         bucket_mb: 0.0005}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: 3, pad: 1, weight_filler: {type: xavier}}
  - {name: relu1, type: relu, bottom: conv1, top: relu1}
  - {name: conv2, type: conv, bottom: relu1, top: conv2, num_output: 4, kernel: 3, pad: 1, weight_filler: {type: xavier}}
  - {name: drop2, type: dropin, bottom: [relu1, conv2], top: drop2, length: 10}
  - {name: pool, type: pool, bottom: drop2, top: pool, method: max, kernel: 2, stride: 2}
  - {name: fc, type: fc, bottom: pool, top: fc, num_output: 5, weight_filler: {type: xavier}}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
YAML
fail() { echo "FAIL: $*"; for f in "$work"/*.log; do echo "--- $f"; cat "$f"; done; exit 1; }

(cd "$work" && "$mpiexec" "${flags[@]}" -np 2 "$train" dp.yaml --device cuda --out gpu >gpu.log 2>&1) ||
  fail "the emulated-GPU run exited $?"
(cd "$work" && "$mpiexec" "${flags[@]}" -np 2 "$train" dp.yaml --device cpu --out cpu >cpu.log 2>&1) ||
  fail "the CPU run exited $?"
grep -q "x 2 ranks (nccl)" "$work/gpu.log" || fail "the GPU run did not use NCCL over 2 ranks"
grep -q "x 2 ranks (mpi)" "$work/cpu.log" || fail "the CPU run did not use MPI over 2 ranks"

/usr/bin/python3 - "$work/gpu/dp_iter_20.safetensors" "$work/cpu/dp_iter_20.safetensors" <<'PY' || fail "parameters differ"
import json, struct, sys
import numpy as np
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], dtype=np.float32)
            for k, v in head.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys(), (sorted(a), sorted(b))
worst = max(float(np.max(np.abs(a[k] - b[k]) / (1e-5 + 1e-3 * np.abs(b[k])))) for k in a)
moved = max(float(np.max(np.abs(b[k]))) for k in b)
print(f"worst scaled difference {worst:.3g} (<= 1 passes), largest parameter {moved:.3g}")
sys.exit(0 if worst <= 1.0 and moved > 0 else 1)
PY
echo "PASS: 2 ranks on emulated GPUs with emulated NCCL match 2 CPU ranks"
