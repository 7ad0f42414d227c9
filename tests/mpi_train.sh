#!/usr/bin/env bash
# dropnet-train under mpirun (tests/scripts.cmake, label mpi): 2 ranks x batch 8 end with the
# parameters of 1 rank x batch 16, and only rank 0 writes files. The two ranks are launched with
# different working directories (MPMD) and a relative --out, so a file written by rank 1 would
# land in b/ - which must stay empty.
# usage: mpi_train.sh MPIEXEC DROPNET_TRAIN WORK_DIR
set -euo pipefail
mpiexec=$1 train=$(realpath "$2") work=$3
source "$(dirname "${BASH_SOURCE[0]}")/mpi_common.sh"
rm -rf "$work"
mkdir -p "$work/a" "$work/b" "$work/single"
cat >"$work/dp.yaml" <<'YAML'
name: dp
seed: 3
device: cpu
data:
  train: {source: synthetic, shape: [1, 12, 12], num_classes: 5, num_samples: 96, batch_size: 8, scale: 0.0039}
  test: {source: synthetic, shape: [1, 12, 12], num_classes: 5, num_samples: 32, batch_size: 8, scale: 0.0039}
solver: {base_lr: 0.02, momentum: 0.9, weight_decay: 0.001, max_iter: 20, display: 5, test_interval: 10,
         test_iter: 2, snapshot: 10, bucket_mb: 0.0005}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: 3, pad: 1, weight_filler: {type: xavier}}
  - {name: relu1, type: relu, bottom: conv1, top: relu1}
  - {name: conv2, type: conv, bottom: relu1, top: conv2, num_output: 4, kernel: 3, pad: 1, weight_filler: {type: xavier}}
  - {name: drop2, type: dropin, bottom: [relu1, conv2], top: drop2, length: 10}
  - {name: fc, type: fc, bottom: drop2, top: fc, num_output: 5, weight_filler: {type: xavier}}
  - {name: accuracy, type: accuracy, bottom: [fc, label], top: accuracy, phase: test}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
YAML
fail() { echo "FAIL: $*"; echo "--- log"; cat "$work/log" 2>/dev/null || true; exit 1; }

"$mpiexec" "${flags[@]}" -np 1 --wdir "$work/a" "$train" "$work/dp.yaml" --out run \
  : -np 1 --wdir "$work/b" "$train" "$work/dp.yaml" --out run >"$work/log" 2>&1 || fail "mpirun exited $?"
(cd "$work/single" && "$train" "$work/dp.yaml" --out run data.train.batch_size=16 data.test.batch_size=16 \
  >"$work/single.log" 2>&1) || fail "single-process run failed"

[ -z "$(ls -A "$work/b")" ] || fail "rank 1 wrote files: $(cd "$work/b" && find . -type f | head)"
for f in config.yaml metrics.jsonl metrics.csv dp_iter_10.safetensors dp_iter_20.safetensors dp_iter_20.solverstate; do
  [ -f "$work/a/run/$f" ] || fail "rank 0 did not write run/$f"
done
# One writer: as many records as the single-process run (display every 5, tests at 0, 10, 20).
n2=$(wc -l <"$work/a/run/metrics.jsonl") n1=$(wc -l <"$work/single/run/metrics.jsonl")
[ "$n2" = "$n1" ] || fail "metrics.jsonl has $n2 records, the single-process run $n1"
grep -q "x 2 ranks (mpi)" "$work/log" || fail "rank 0 did not announce 2 ranks"
! grep -q "\[rank 1\]" "$work/log" || fail "rank 1 logged: $(grep "\[rank 1\]" "$work/log" | head -3)"

/usr/bin/python3 - "$work/a/run/dp_iter_20.safetensors" "$work/single/run/dp_iter_20.safetensors" <<'PY' || fail "parameters differ"
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
worst = max(float(np.max(np.abs(a[k] - b[k]) / (1e-5 + 1e-4 * np.abs(b[k])))) for k in a)
moved = max(float(np.max(np.abs(b[k]))) for k in b)
print(f"2 ranks x batch 8 vs 1 rank x batch 16 after 20 iterations: worst |diff| / (1e-5 + 1e-4 |ref|) = {worst:.3g}")
sys.exit(0 if worst <= 1.0 and moved > 0 else 1)
PY
echo "PASS"
