#!/usr/bin/env bash
# The paper's three open experiments (its Section 6) on Fashion-MNIST, written to
# bench/results/future_work/ (README.md there states the questions and the reading):
#   (a) DropIn vs initializing from a trained shallow net: LeNet(2N) with gradual DropIn
#       (a_lenetN_dropin), the plain LeNet(2N) whose conv1_1 / conv2_1 / ip1 / ip2 start from a
#       LeNet trained for a quarter of the iterations (a_lenetN_init: --weights --weights-map; the
#       pre-training counts in the total), and the plain net from scratch (a_lenetN_plain); the same
#       total iterations.
#   (b) hundreds of layers: LeNet(100) / LeNet(200) with asynchronous DropIn (layers added one
#       after another: lenetN_async.yaml), with all DropIns over one span at once, and plain.
#   (c) thin-to-wide: LeNet(10) grown from a quarter of its width (lenet10_grow.yaml) vs the plain
#       LeNet(10) at full width from the start (the a_lenet10_plain runs).
# --scale S shortens every schedule by S (iterations, DropIn lengths and spacing, growth length,
# test interval), keeping its shape; --seeds 1,2,3 repeats each run (names get _seed<k> for k > 1).
# Each run's total training FLOPs (forward x 3, integrated over the schedule with
# `dropnet-summary --iter`, so what compute skipping leaves out is not counted) goes to flops.tsv.
# usage: tools/reproduce_future_work.sh [--scale S] [--seeds 1,2,3] [--parts a,b,c] [--depths 10,30,50]
#                                       [--deep 100,200] [--out DIR] [--threads N] [--test-iter N]
#                                       [--test-interval N] [--deep-iters N] [--report-only]
# --report-only trains nothing: flops.tsv, results.md and the plots from the runs already there
# (after a run was stopped part-way, e.g. when the session's time ran out).
# --deep-iters N sets (b)'s total iterations (default: its 20,000 / 30,000 x scale), so the
# per-layer spacing and length (x scale) can stay long enough for the net to follow while the full
# net's tail is cut; it must leave room for the asynchronous span ((N/2 - 2) x spacing + length).
# flops.tsv keeps the rows of runs this invocation does not redo, so parts can run one at a time.
set -euo pipefail
orig_args="$*"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$here/build"
out="$here/bench/results/future_work"
scale=1
seeds="1,2,3"
parts="a,b,c"
depths="10,30,50"
deep="100,200"
threads=0
test_iter=100
test_interval=""
made_groups=""
deep_iters=""
report_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --scale) scale="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --parts) parts="$2"; shift 2 ;;
    --depths) depths="$2"; shift 2 ;;
    --deep) deep="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --test-iter) test_iter="$2"; shift 2 ;;
    --test-interval) test_interval="$2"; shift 2 ;;
    --deep-iters) deep_iters="$2"; shift 2 ;;
    --report-only) report_only=1; shift ;;
    -h|--help) sed -n 2,27p "$0"; exit 0 ;;
    *) echo "reproduce_future_work.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
scaled() { /usr/bin/python3 -c "print(max(1, int(round($1 * $scale))))"; }
has() { [[ ",$1," == *",$2,"* ]]; }
T=$(scaled 10000)            # LeNet(2N) runs: the paper's 10,000 iterations
L=$(scaled 7500)             # lenet10.yaml's DropIn length
common=("solver.test_interval=${test_interval:-$(scaled 500)}" "solver.test_iter=$test_iter" "solver.snapshot=0"
        "solver.display=$(scaled 100)")
: > "$out/flops.tsv.new"

# Total training FLOPs of a run: 3 x the forward FLOPs per image left at each iteration (sampled at
# 20 points), times the batch, summed over its iterations.
flops() {  # CONFIG ITERS OVERRIDES...
  local cfg=$1 iters=$2
  shift 2
  /usr/bin/python3 - "$build/tools/dropnet-summary" "$cfg" "$iters" "$@" <<'EOF'
import re, subprocess, sys
tool, cfg, iters, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
step = max(1, iters // 20)
total = 0.0
for t in range(0, iters, step):
    o = subprocess.run([tool, cfg, *overrides, "--synthetic", "--no-defaults", "--iter", str(t)],
                       capture_output=True, text=True, check=True).stdout
    m = re.search(r"batch (\d+)\): [\d,]+ parameters, \S+ forward FLOPs per image, (\S+) at iteration", o)
    batch, used = int(m.group(1)), m.group(2)
    scale = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(used[-1], 1.0)
    value = float(used[:-1]) * scale if used[-1] in "KMGT" else float(used)
    total += 3 * value * batch * min(step, iters - t)
print(f"{total:.4g}")
EOF
}

run() {  # NAME SEED CONFIG [ARGS...]
  local name=$1 seed=$2 cfg=$3
  shift 3
  [ "$seed" != 1 ] && name="${name}_seed$seed"
  made_groups+=" $(echo "$name" | sed 's/^\([abc]_lenet[0-9]*\)_.*/\1/')"
  [ "$report_only" = 1 ] && return 0
  echo "== $name"
  local t0=$SECONDS
  "$build/tools/dropnet-train" "$cfg" "seed=$seed" "${common[@]}" --out "$out/$name" --force --progress log \
    ${threads:+--threads $threads} "$@" > "$out/$name.log" 2>&1 || echo "   (exit $?: see $name.log)"
  echo "   $((SECONDS - t0)) s"
}
[ "$threads" = 0 ] && threads=""

IFS=, read -r -a seed_list <<< "$seeds"
if has "$parts" a || has "$parts" c; then
  for n in ${depths//,/ }; do
    has "$parts" a || [ "$n" = 10 ] || continue
    for s in "${seed_list[@]}"; do
      if has "$parts" a; then
        run "a_lenet${n}_dropin" "$s" "$here/configs/lenet${n}.yaml" "solver.max_iter=$T" "vars.L=$L"
        pre=$((T / 4))
        run "a_lenet${n}_init_pre" "$s" "$here/configs/lenet.yaml" "solver.max_iter=$pre" "solver.snapshot=$pre"
        sname="a_lenet${n}_init_pre"; [ "$s" != 1 ] && sname="${sname}_seed$s"
        run "a_lenet${n}_init" "$s" "$here/configs/lenet${n}_plain.yaml" "solver.max_iter=$((T - pre))" \
          --weights "$(ls "$out/$sname"/*_iter_"$pre".safetensors | head -1)" --weights-map conv1=conv1_1,conv2=conv2_1
      fi
      # (c)'s full-width baseline is (a)'s plain LeNet(10).
      if has "$parts" a || [ "$n" = 10 ]; then run "a_lenet${n}_plain" "$s" "$here/configs/lenet${n}_plain.yaml" "solver.max_iter=$T"; fi
      if has "$parts" c && [ "$n" = 10 ]; then
        run "c_lenet10_grow" "$s" "$here/configs/lenet10_grow.yaml" "solver.max_iter=$T" "vars.G=$L"
      fi
    done
    has "$parts" a && {
      printf "a_lenet%s_dropin\t%s\n" "$n" "$(flops "$here/configs/lenet${n}.yaml" "$T" "vars.L=$L")" >> "$out/flops.tsv.new"
      printf "a_lenet%s_init\t%s\n" "$n" "$(/usr/bin/python3 -c "print(f'{$(flops "$here/configs/lenet.yaml" $((T / 4))) + $(flops "$here/configs/lenet${n}_plain.yaml" $((T - T / 4))):.4g}')")" >> "$out/flops.tsv.new"
    }
    printf "a_lenet%s_plain\t%s\n" "$n" "$(flops "$here/configs/lenet${n}_plain.yaml" "$T")" >> "$out/flops.tsv.new"
    if has "$parts" c && [ "$n" = 10 ]; then
      printf "c_lenet10_grow\t%s\n" "$(flops "$here/configs/lenet10_grow.yaml" "$T" "vars.G=$L")" >> "$out/flops.tsv.new"
    fi
  done
fi

if has "$parts" b; then
  for n in ${deep//,/ }; do
    base_iter=$([ "$n" = 100 ] && echo 20000 || echo 30000)
    spacing=$([ "$n" = 100 ] && echo 240 || echo 180)
    length=$([ "$n" = 100 ] && echo 200 || echo 150)
    Tb=${deep_iters:-$(scaled "$base_iter")}; Sb=$(scaled "$spacing"); Lb=$(scaled "$length")
    span=$(( (n / 2 - 2) * Sb + Lb ))  # the asynchronous schedule's whole span: all-at-once ramps over it
    [ "$span" -le "$Tb" ] || { echo "reproduce_future_work.sh: (b) LeNet($n): the span $span is past $Tb iterations" >&2; exit 2; }
    for s in "${seed_list[@]}"; do
      run "b_lenet${n}_async" "$s" "$here/configs/lenet${n}_async.yaml" "solver.max_iter=$Tb" "vars.S=$Sb" "vars.L=$Lb"
      run "b_lenet${n}_atonce" "$s" "$here/configs/lenet${n}_async.yaml" "solver.max_iter=$Tb" "vars.S=0" "vars.L=$span"
      run "b_lenet${n}_plain" "$s" "$here/configs/lenet${n}_async_plain.yaml" "solver.max_iter=$Tb"
    done
    printf "b_lenet%s_async\t%s\n" "$n" "$(flops "$here/configs/lenet${n}_async.yaml" "$Tb" "vars.S=$Sb" "vars.L=$Lb")" >> "$out/flops.tsv.new"
    printf "b_lenet%s_atonce\t%s\n" "$n" "$(flops "$here/configs/lenet${n}_async.yaml" "$Tb" "vars.S=0" "vars.L=$span")" >> "$out/flops.tsv.new"
    printf "b_lenet%s_plain\t%s\n" "$n" "$(flops "$here/configs/lenet${n}_async_plain.yaml" "$Tb")" >> "$out/flops.tsv.new"
  done
fi
# Rows of this invocation replace those of the same name; the others stay.
touch "$out/flops.tsv"
/usr/bin/python3 - "$out/flops.tsv" "$out/flops.tsv.new" <<'EOF'
import sys
rows = {}
for path in sys.argv[1:]:  # the new rows last: they win
    for line in open(path):
        if line.strip():
            rows[line.split("\t")[0]] = line.rstrip("\n")
open(sys.argv[1], "w").write("".join(rows[k] + "\n" for k in sorted(rows)))
EOF
rm -f "$out/flops.tsv.new"

# results.md lists every invocation that made runs here (commands.txt), since parts run separately.
touch "$out/commands.txt"
[ "$report_only" = 1 ] || grep -qxF "tools/reproduce_future_work.sh $orig_args" "$out/commands.txt" ||
  echo "tools/reproduce_future_work.sh $orig_args" >> "$out/commands.txt"
/usr/bin/python3 "$here/tools/summarize_runs.py" "$out" --scale "$scale" --title "The paper's future work (Section 6)" \
  --commands "$out/commands.txt" > /dev/null
# One plot per question and depth (tools/plot_metrics.py): accuracy and loss, the mean over the seeds
# with their range, DropIn p / grow width on a second axis, divergence marked; (a) with the shallow
# LeNet that initialized `init` as the reference line. Only the groups this invocation ran: the
# others keep their plots (and their scale in the title).
for g in $(echo $made_groups | tr ' ' '\n' | sort -u); do
  runs=(); labels=(); ref=()
  # (c) against the full-width LeNet(10) of (a).
  if [ "$g" = c_lenet10 ]; then
    for r in "$out"/a_lenet10_plain "$out"/a_lenet10_plain_seed*; do [ -d "$r" ] && runs+=("$r"); done
    [ "${#runs[@]}" -gt 0 ] && labels+=(full_width)
  fi
  [ -d "$out/${g}_init_pre" ] && ref=(--reference "$out/${g}_init_pre" --reference-label "LeNet (init's source)")
  for r in "$out/${g}"_*; do
    [ -d "$r" ] && [[ "$r" != *_pre ]] && [[ "$r" != *_pre_seed* ]] || continue
    runs+=("$r")
    [[ "$r" == *_seed* ]] || labels+=("${r##*_}")  # a seed joins its run's curve
  done
  [ "${#runs[@]}" -gt 0 ] || continue
  /usr/bin/python3 "$here/tools/plot_metrics.py" "${runs[@]}" --labels "$(IFS=,; echo "${labels[*]}")" "${ref[@]}" \
    --title "$g (scale $scale)" --out "$out/$g.png" > /dev/null
done
echo "results: $out/results.md, flops: $out/flops.tsv"
