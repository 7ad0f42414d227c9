#!/usr/bin/env bash
# bench/torch_peer.py (the PyTorch peer of bench/e2e_vs_pytorch.sh) builds and trains every net it
# is used for, on the CPU with a tiny batch: the same TRAIN net as dropnet (shape errors would stop
# it at the fc layers), a finite loss. Exit 77 (skip) without python3-torch / python3-yaml.
set -euo pipefail
summary=$1
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
/usr/bin/python3 -c "import torch, yaml" 2>/dev/null || { echo "python3-torch or python3-yaml missing: skipped"; exit 77; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for net in lenet10:16 alexnet13:2 vgg16:1; do
  name=${net%%:*} batch=${net##*:}
  "$summary" "$here/configs/$name.yaml" --synthetic --config "data.train.batch_size=$batch" > "$work/$name.yaml"
  out=$(/usr/bin/python3 "$here/bench/torch_peer.py" "$work/$name.yaml" --device cpu --iters 1 --warmup 1 --threads 1)
  echo "$out"
  echo "$out" | grep -Eq "loss [0-9]+\.[0-9]+" || { echo "$name: no finite loss"; exit 1; }
  echo "$out" | grep -q "^torch_img_per_s=" || { echo "$name: no throughput line"; exit 1; }
done
