#!/usr/bin/env bash
# End-to-end training throughput on one GPU, in one run: dropnet with its native kernels, dropnet
# with cuDNN convolutions (cuBLAS fc), and PyTorch eager (bench/torch_peer.py: the same net built
# from the resolved config, cudnn.benchmark on), on synthetic data, all at one precision:
# --precision fp32 (default: dropnet fp32, PyTorch with TF32 off), tf32 (dropnet `precision: tf32`,
# PyTorch with TF32 on for matmul and cuDNN) or bf16 (dropnet `precision: bf16`, PyTorch under
# BF16 autocast).
#
#   bench/e2e_vs_pytorch.sh [--tools DIR] [--nets alexnet13,vgg16] [--iters N] [--warmup N]
#                           [--python PY] [--device cuda|cpu] [--precision fp32|tf32|bf16]
# --tools: where dropnet-train and dropnet-summary are (default build/tools). Prints one line per
# run and a table with images/s and the ratio to PyTorch (> 1: dropnet is faster).
# PYTHON_LD_LIBRARY_PATH, when set, is the library path of the PyTorch process (tools/gpu-check.sh
# puts its bundle's libraries first on LD_LIBRARY_PATH; PyTorch must load its own).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$here/build/tools"
nets="alexnet13,vgg16"
iters=40
warmup=10
py=python3
device=cuda
precision=fp32
while [ $# -gt 0 ]; do
  case "$1" in
    --tools) tools="$2"; shift 2 ;;
    --nets) nets="$2"; shift 2 ;;
    --iters) iters="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --python) py="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --precision) precision="$2"; shift 2 ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) echo "e2e_vs_pytorch.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
case "$precision" in fp32|tf32|bf16) ;; *) echo "e2e_vs_pytorch.sh: --precision fp32|tf32|bf16, got '$precision'" >&2; exit 2 ;; esac
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Mean images/s over the display records after the warm-up iterations.
ips() {
  "$py" - "$1" "$warmup" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
v = [r["images_per_s"] for r in recs if r.get("kind") == "train" and r.get("iter", 0) >= int(sys.argv[2])
     and r.get("images_per_s")]
print(f"{sum(v) / len(v):.1f}" if v else "nan")
EOF
}

declare -A result
for net in ${nets//,/ }; do
  cfg="$work/$net.yaml"
  "$tools/dropnet-summary" "$here/configs/$net.yaml" --synthetic --config > "$cfg"
  # Per-layer engines for the cuDNN run: conv -> cudnn, fc -> cublas (the rest has only native).
  mapfile -t lib_engines < <("$py" - "$cfg" <<'EOF'
import sys, yaml
for l in yaml.safe_load(open(sys.argv[1]))["layers"]:
    if l.get("type") == "conv": print(f"layers.{l['name']}.engine=cudnn")
    elif l.get("type") == "fc": print(f"layers.{l['name']}.engine=cublas")
EOF
)
  common=("solver.max_iter=$((warmup + iters))" solver.test_interval=0 solver.test_iter=0 solver.snapshot=0
    solver.display=1 "precision=$precision" --device "$device" --progress log)
  for engine in native cudnn; do
    extra=()
    [ "$engine" = cudnn ] && extra=("${lib_engines[@]}")
    run="$work/$net-$engine"
    if "$tools/dropnet-train" "$cfg" "${common[@]}" "${extra[@]}" --out "$run" > "$run.log" 2>&1; then
      result[$net,$engine]=$(ips "$run/metrics.jsonl")
    else
      echo "dropnet $net ($engine): failed, last lines:"; tail -5 "$run.log"
      result[$net,$engine]=nan
    fi
    echo "dropnet $net $engine: ${result[$net,$engine]} img/s"
  done
  if out=$(LD_LIBRARY_PATH="${PYTHON_LD_LIBRARY_PATH-${LD_LIBRARY_PATH:-}}" "$py" "$here/bench/torch_peer.py" "$cfg" --device "$device" --iters "$iters" --warmup "$warmup" --precision "$precision" 2>&1); then
    echo "$out" | head -1
    result[$net,torch]=$(echo "$out" | sed -n 's/^torch_img_per_s=//p')
  else
    echo "torch $net: failed: $(echo "$out" | tail -3)"
    result[$net,torch]=nan
  fi
  echo "pytorch $net: ${result[$net,torch]} img/s"
done

echo
echo "end to end ($device, $precision, synthetic data, $iters timed iterations after $warmup): images/s, ratio to PyTorch"
printf "%-10s %14s %14s %14s %12s %12s\n" net dropnet-native dropnet-cudnn pytorch native/pt cudnn/pt
ratio() {  # a / b with two decimals, "-" when either is missing
  "$py" -c "import math, sys; a, b = float(sys.argv[1]), float(sys.argv[2]); \
print('-' if math.isnan(a) or math.isnan(b) or b == 0 else f'{a / b:.2f}')" "$1" "$2"
}
for net in ${nets//,/ }; do
  n=${result[$net,native]} c=${result[$net,cudnn]} t=${result[$net,torch]}
  printf "%-10s %14s %14s %14s %12s %12s\n" "$net" "$n" "$c" "$t" "$(ratio "$n" "$t")" "$(ratio "$c" "$t")"
done
