#!/usr/bin/env bash
# What DropIn costs before its layers are in (issue 15): training images/s of LeNet(10) at p ~ 0
# (`lenet10.yaml vars.L=1000000`: every DropIn still at its start) against the shallow LeNet
# (`lenet.yaml`), with compute skipping and without it (--no-skip), from `dropnet-time` (forward
# + backward per layer, no update) on synthetic data of MNIST's shape. The three are interleaved
# over ROUNDS rounds in one run and each one's best round is compared, so a shared, noisy machine
# affects them alike. Target: skipping >= 1/1.3 of LeNet's images/s.
# usage: bench/skip_cost.sh [BUILD_DIR] [ROUNDS] [THREADS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$here/build}"
rounds="${2:-3}"
threads="${3:-1}"
time_bin="$build/tools/dropnet-time"
[ -x "$time_bin" ] || { echo "skip_cost.sh: no $time_bin (build first)" >&2; exit 2; }

ips() {  # CONFIG [ARGS...]: images/s of one dropnet-time run
  "$time_bin" "$@" --synthetic --device cpu --threads "$threads" --iterations 30 2>/dev/null |
    sed -n 's/.* \([0-9.]*\) images\/s.*/\1/p' | tail -1
}

declare -A best=([lenet]=0 [skip]=0 [noskip]=0)
for r in $(seq 1 "$rounds"); do
  for arm in lenet skip noskip; do
    case $arm in
      lenet) v=$(ips "$here/configs/lenet.yaml") ;;
      skip) v=$(ips "$here/configs/lenet10.yaml" vars.L=1000000) ;;
      noskip) v=$(ips "$here/configs/lenet10.yaml" vars.L=1000000 --no-skip) ;;
    esac
    [ -n "$v" ] || { echo "skip_cost.sh: $arm gave no images/s" >&2; exit 1; }
    echo "round $r: $arm $v images/s"
    best[$arm]=$(awk -v a="${best[$arm]}" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
  done
done
awk -v l="${best[lenet]}" -v s="${best[skip]}" -v n="${best[noskip]}" -v t="$threads" 'BEGIN {
  printf "skip cost (%d thread(s), best of the rounds): LeNet %.0f img/s; LeNet(10) at p~0 with skipping %.0f (%.2fx of LeNet), without %.0f (%.2fx); skipping is %.2fx faster; target >= %.2fx of LeNet: %s\n",
    t, l, s, s / l, n, n / l, s / n, 1 / 1.3, (s / l >= 1 / 1.3 ? "met" : "NOT met")
}'
