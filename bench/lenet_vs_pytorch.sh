#!/usr/bin/env bash
# Trains Caffe's LeNet on Fashion-MNIST with dropnet and with PyTorch (Debian's python3-torch,
# CPU) in one run, same batch/solver/thread count, and prints images/s for both, the ratio and
# the peak resident memory of each process (/usr/bin/time -v).
# Usage: bench/lenet_vs_pytorch.sh [BUILD_DIR] [ITERS]   (threads: 1 and 2)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$here/build}"
iters="${2:-600}"
warmup=50
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf "%-8s %14s %14s %8s %14s %14s\n" threads dropnet_img/s pytorch_img/s ratio dropnet_maxrss pytorch_maxrss
for t in 1 2; do
  # dropnet: steady-state img/s = mean of the display intervals after the warm-up.
  /usr/bin/time -v "$build/tools/dropnet-train" "$here/configs/lenet.yaml" --threads "$t" --out "$tmp/run$t" \
      solver.max_iter="$iters" solver.test_interval=0 solver.display=50 solver.snapshot=0 --quiet \
      > "$tmp/dn$t.log" 2> "$tmp/dn$t.err" || { cat "$tmp/dn$t.err"; exit 1; }
  dn=$(/usr/bin/python3 - "$tmp/run$t/metrics.jsonl" "$warmup" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
v = [r["images_per_s"] for r in rows if r["iter"] > int(sys.argv[2])]
print(f"{sum(v) / len(v):.1f}")
PY
)
  dn_rss=$(grep "Maximum resident" "$tmp/dn$t.err" | awk '{print $NF}')
  OMP_NUM_THREADS=$t /usr/bin/time -v /usr/bin/python3 "$here/bench/lenet_pytorch.py" --threads "$t" --iters "$iters" \
      --warmup "$warmup" > "$tmp/pt$t.log" 2> "$tmp/pt$t.err" || { cat "$tmp/pt$t.err"; exit 1; }
  pt=$(grep pytorch_img_per_s "$tmp/pt$t.log" | cut -d= -f2)
  pt_rss=$(grep "Maximum resident" "$tmp/pt$t.err" | awk '{print $NF}')
  ratio=$(/usr/bin/python3 -c "print(f'{$dn / $pt:.2f}')")
  printf "%-8s %14s %14s %7sx %11s KB %11s KB\n" "$t" "$dn" "$pt" "$ratio" "$dn_rss" "$pt_rss"
done
