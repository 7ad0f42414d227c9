#!/usr/bin/env bash
# The paper's MNIST experiments (Figures 2 and 3) on any IDX data set (default: Fashion-MNIST).
#   Figure 2: LeNet(10) without DropIn and with DropIn lengths 1000 / 2500 / 5000 / 7500.
#   Figure 3: LeNet(30) and LeNet(50) without DropIn and with lengths 2500 / 7500.
# Each for the faithful variant (no ReLU after the added convs) and `_relu`, with Caffe's init
# (xavier, the LeNet default) and the paper's (gaussian std 0.01, zero bias, as in its CIFAR
# table). --scale S shortens everything (iterations, lengths, test interval) by S for 2-core
# machines; the figures in bench/results say which scale made them. --seeds 1,2,3 repeats every run
# with those seeds (run names get _seed<k> for k > 1; results.md adds mean and spread);
# --depths 30,50 picks Figure 3's nets. --set KEY=VALUE (repeatable) adds a config override to every
# run, e.g. --set data.train.shuffle=false for Caffe's fixed data order (bench/results/mnist/).
# Writes OUT/<run>/metrics.jsonl, OUT/results.md (table) and OUT/fig2_*.png, OUT/fig3_*.png.
set -euo pipefail
orig_args="$*"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$here/build"
data=/usr/share/datasets/fashion-mnist
out="$here/bench/results/mnist"
scale=1
figures="2,3"
variants="faithful,relu"
inits="caffe,paper"
seeds="1"
depths="30,50"
threads=0
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --scale) scale="$2"; shift 2 ;;
    --figures) figures="$2"; shift 2 ;;
    --variants) variants="$2"; shift 2 ;;
    --inits) inits="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --depths) depths="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --set) sets+=("$2"); shift 2 ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) echo "reproduce_mnist.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
iters=$(/usr/bin/python3 -c "print(int(round(10000 * $scale)))")
scaled() { /usr/bin/python3 -c "print(max(1, int(round($1 * $scale))))"; }
test_interval=$(scaled 500)

data_overrides=(
  "data.train.images=$data/train-images-idx3-ubyte.gz" "data.train.labels=$data/train-labels-idx1-ubyte.gz"
  "data.test.images=$data/t10k-images-idx3-ubyte.gz" "data.test.labels=$data/t10k-labels-idx1-ubyte.gz")

# Overrides that switch every learnable layer of LeNet(2N) to the paper's init.
paper_init() {
  local n=$1 i
  local layers=(conv1_1 conv2_1 ip1 ip2)
  for ((i = 2; i <= n; i++)); do layers+=("conv1_$i" "conv2_$i"); done
  for l in "${layers[@]}"; do
    echo "layers.$l.weight_filler={type: gaussian, std: 0.01}"
  done
}

run() {  # run NAME CONFIG N [overrides...]: once per seed (seed k > 1: NAME_seed<k>)
  local base=$1 cfg=$2 n=$3 seed name
  shift 3
  for seed in ${seeds//,/ }; do
    name=$base
    [ "$seed" != 1 ] && name="${base}_seed$seed"
    if [ -f "$out/$name/done" ]; then echo "skip $name (done)"; continue; fi
    local extra=()
    [ "$init" = paper ] && mapfile -t extra < <(paper_init "$n")
    echo "== $name"
    rm -rf "${out:?}/$name"
    "$build/tools/dropnet-train" "$here/configs/$cfg" --out "$out/$name" --threads "$threads" --quiet \
      "solver.max_iter=$iters" "solver.test_interval=$test_interval" solver.snapshot=0 "solver.display=$test_interval" \
      "seed=$seed" "${data_overrides[@]}" "${extra[@]}" "${sets[@]}" "$@" > "$out/$name.log" 2>&1 || echo "   (exit $? -- see $name.log)"
    touch "$out/$name/done"
  done
}

for init in ${inits//,/ }; do
  for variant in ${variants//,/ }; do
    suf=""; [ "$variant" = relu ] && suf="_relu"
    if [[ ",$figures," == *",2,"* ]]; then
      run "fig2_lenet10${suf}_${init}_plain" "lenet10_plain${suf}.yaml" 5
      for L in 1000 2500 5000 7500; do
        run "fig2_lenet10${suf}_${init}_L$L" "lenet10${suf}.yaml" 5 "vars.L=$(scaled $L)"
      done
    fi
    if [[ ",$figures," == *",3,"* ]]; then
      for depth in ${depths//,/ }; do
        n=$((depth / 2))
        run "fig3_lenet${depth}${suf}_${init}_plain" "lenet${depth}_plain${suf}.yaml" $n
        for L in 2500 7500; do
          run "fig3_lenet${depth}${suf}_${init}_L$L" "lenet${depth}${suf}.yaml" $n "vars.L=$(scaled $L)"
        done
      done
    fi
  done
done
/usr/bin/python3 "$here/tools/summarize_runs.py" "$out" --scale "$scale" --command "$0 $orig_args"
