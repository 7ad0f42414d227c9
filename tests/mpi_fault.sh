#!/usr/bin/env bash
# A rank that stalls or dies makes every other rank exit non-zero within the communication
# timeout, with a message that names the operation and the missing rank (tests/scripts.cmake,
# label mpi). DROPNET_TEST_FAULT makes rank 1 stop (stall) or SIGKILL itself (kill) at iteration 5,
# after the iteration's stop-flag all-reduce: the others block in a gradient bucket.
# `stop`: a rank stopped by SIGSTOP and resumed by SIGCONT is not a failure of its peers. Rank 1
# (timeout 2 s) is stopped for 5 s inside a gradient bucket it has posted; rank 0 (timeout 60 s)
# waits for it. Rank 1's own deadline must not count the time it spent stopped: the job finishes,
# exit 0, and rank 1 says it was stopped (it used to time out at once on resuming and blame rank 0).
# usage: mpi_fault.sh MPIEXEC DROPNET_TRAIN WORK_DIR stall|kill|stop
set -uo pipefail
mpiexec=$1 train=$2 work=$3 mode=$4
source "$(dirname "${BASH_SOURCE[0]}")/mpi_common.sh"
rm -rf "$work"
mkdir -p "$work"
cat >"$work/dp.yaml" <<'YAML'
name: fault
seed: 3
device: cpu
data:
  train: {source: synthetic, shape: [1, 12, 12], num_classes: 5, num_samples: 96, batch_size: 8, scale: 0.0039}
solver: {base_lr: 0.01, max_iter: 100000, display: 0}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 4, kernel: 3, weight_filler: {type: xavier}}
  - {name: fc, type: fc, bottom: conv1, top: fc, num_output: 5, weight_filler: {type: xavier}}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
YAML
fail() { echo "FAIL: $*"; exit 1; }
if [ "$mode" = stop ]; then
  sed -i 's/max_iter: 100000/max_iter: 10/' "$work/dp.yaml"
  DROPNET_TEST_FAULT="stop:1:5:5" timeout -k 5 90 "$mpiexec" "${flags[@]}" \
    -np 1 "$train" "$work/dp.yaml" --out "$work/run" --comm-timeout 60 : \
    -np 1 "$train" "$work/dp.yaml" --out "$work/run" --comm-timeout 2 >"$work/log" 2>&1
  rc=$?
  grep -v " I " "$work/log"
  grep -q "rank 1: DROPNET_TEST_FAULT: stop at iteration 5" "$work/log" || fail "the fault was not injected"
  [ $rc -eq 0 ] || fail "the job exited $rc: a rank stopped for less than its peers' timeout failed the job"
  grep -Eq "rank 1: this process was stopped for about [4-9][.0-9]* s and resumed \(SIGCONT\) while waiting in all-reduce" "$work/log" \
    || fail "rank 1 did not say it was stopped"
  echo "PASS"
  exit 0
fi
timeout_s=4
start=$(date +%s.%N)
DROPNET_TEST_FAULT="$mode:1:5" timeout -k 5 90 "$mpiexec" "${flags[@]}" -np 3 "$train" "$work/dp.yaml" \
  --out "$work/run" --comm-timeout $timeout_s >"$work/log" 2>&1
rc=$?
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "mpirun exited $rc after ${elapsed} s"
grep -v " I " "$work/log"
[ $rc -ne 0 ] || fail "the job exited 0"
[ $rc -ne 124 ] && [ $rc -ne 137 -o "$mode" = kill ] || fail "the job hung until timeout(1) killed it"
grep -q "rank 1: DROPNET_TEST_FAULT: $mode at iteration 5" "$work/log" || fail "the fault was not injected"
if [ "$mode" = stall ]; then
  # Detection within the timeout plus the diagnosis grace (1 s) and start-up.
  awk -v e="$elapsed" -v t=$timeout_s 'BEGIN { exit !(e < t + 15) }' || fail "took ${elapsed} s"
  for r in 0 2; do
    grep -Eq "error: rank $r: all-reduce of gradient bucket [0-9]+ \(layers [0-9.]+, [0-9.]+ MB\) during iteration 5 \(collective #[0-9]+\) did not complete within $timeout_s s; no answer from ranks? ([0-9]+, )*1[,; ]" "$work/log" \
      || fail "rank $r did not report the stalled rank 1 and the operation"
  done
else
  # The launcher sees the death at once and ends the job; the survivors name the operation they
  # were waiting in when its SIGTERM arrived, the launcher names the dead rank.
  awk -v e="$elapsed" -v t=$timeout_s 'BEGIN { exit !(e < t + 15) }' || fail "took ${elapsed} s"
  grep -Eq "rank 1 .*(signal 9|Killed)|no answer from rank 1" "$work/log" || fail "nothing names the dead rank 1"
fi
echo "PASS"
