#!/usr/bin/env bash
# Resuming a data-parallel run whose shards have unequal sizes (50 samples over 3 ranks: 17, 17,
# 16) after an epoch end, where every rank is at a different data position: each rank must get
# its own position back from the snapshot. 3 ranks x 20 iterations straight through end with the
# same parameters, bit for bit, as 10 iterations + resume + 10 (tests/scripts.cmake, label mpi).
# usage: mpi_resume.sh MPIEXEC DROPNET_TRAIN WORK_DIR
set -euo pipefail
mpiexec=$1 train=$(realpath "$2") work=$3
source "$(dirname "${BASH_SOURCE[0]}")/mpi_common.sh"
rm -rf "$work"
mkdir -p "$work"
cat >"$work/r.yaml" <<'YAML'
name: r
seed: 5
device: cpu
data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 50, batch_size: 4, shuffle: true}
solver: {base_lr: 0.05, momentum: 0.9, weight_decay: 0.001, max_iter: 20, display: 5, test_interval: 0,
         snapshot: 10}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 3, kernel: 3, pad: 1, weight_filler: {type: xavier}}
  - {name: relu1, type: relu, bottom: conv1, top: relu1}
  - {name: fc, type: fc, bottom: relu1, top: fc, num_output: 4, weight_filler: {type: xavier}}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
YAML
fail() { echo "FAIL: $*"; for f in "$work"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }
run() { "$mpiexec" "${flags[@]}" -np 3 "$train" "$work/r.yaml" "$@"; }

(cd "$work" && run --out straight >"$work/straight.log" 2>&1) || fail "straight run exited $?"
(cd "$work" && run --out split solver.max_iter=10 >"$work/first.log" 2>&1) || fail "first half exited $?"
# The config file is given again, so the resume must name the first half's override too (the
# config the run was trained with, plus this change): solver.max_iter=20.
(cd "$work" && run --out split --resume split solver.max_iter=20 >"$work/second.log" 2>&1) ||
  fail "resumed half exited $?"
grep -q "resumed from split at iteration 10" "$work/second.log" || fail "the second half did not resume at 10"
# The tensors, bit for bit: the data section after the header (the header's metadata records each
# run's own command line and time).
tensors() { local n; n=$(od -An -t u8 -N8 "$1" | tr -d ' '); tail -c +$((9 + n)) "$1"; }
cmp <(tensors "$work/straight/r_iter_20.safetensors") <(tensors "$work/split/r_iter_20.safetensors") ||
  fail "20 iterations straight and 10 + resume + 10 end with different parameters"
echo "PASS: 3 ranks, unequal shards, resumed after an epoch end: parameters identical"
