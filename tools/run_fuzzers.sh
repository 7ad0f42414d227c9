#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan + UBSan) and runs each for a bounded time.
# Usage: tools/run_fuzzers.sh [--target image_list|idx|config|all] [--seconds 60 | --runs N] [--seed 1]
#                             [--workdir DIR] [--jobs N]   (--seed 0: random)
#   image_list  the image-list reader (tests/fuzzers/fuzz_image_list.cpp)
#   idx         the gzip / IDX reader (tests/fuzzers/fuzz_idx.cpp)
#   config      the config loader: YAML text -> load and build as --dry-run does
#               (tests/fuzzers/fuzz_config_loader.cpp), seeded from configs/
# --runs with a fixed seed is deterministic (CI); --seconds depends on the machine's speed. Every
# input has a budget: -timeout (seconds) and -rss_limit_mb; past either is a finding.
# Objects are compiled through ccache when it is installed, so a second run rebuilds nothing.
# Exit 0 when no finding; non-zero (and the crashing input kept in WORKDIR) otherwise.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds=60
runs=""
seed=1
target=all
work="${TMPDIR:-/tmp}/dropnet-fuzz"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --workdir) work="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    *) echo "run_fuzzers.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
case "$target" in image_list|idx|config|all) ;; *) echo "run_fuzzers.sh: unknown target '$target'" >&2; exit 2 ;; esac
command -v clang++ >/dev/null || { echo "run_fuzzers.sh: clang++ not found (Debian: clang)"; exit 77; }
cxx=(clang++)
command -v ccache >/dev/null && cxx=(ccache clang++)
mkdir -p "$work/obj" "$work/generated"
# dropnet_version.h (the CLI library includes it), as the CMake build generates it.
version="$(sed -n 's/^project(dropnet VERSION \([0-9.]*\).*/\1/p' "$here/CMakeLists.txt")"
cmake -DSRC="$here" -DOUT="$work/generated/dropnet_version.h" -DVERSION="${version:-unknown}" \
  -P "$here/cmake/version.cmake"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
       -I"$here" -I"$work/generated" -I/usr/include/stb -DDROPNET_HAVE_CUDA=0 -DDROPNET_HAVE_CUDNN=0 -DDROPNET_HAVE_MPI=0
       -DDROPNET_HAVE_NCCL=0 -DDROPNET_SOURCE_DIR="\"$here\"" -fopenmp -Wno-unused-command-line-argument)
link=(-fsanitize=fuzzer,address,undefined -fopenmp -lyaml-cpp -lopenblas -lfmt -lspdlog -lz -lpthread)

# Compiles one source into $work/obj (the object's name keeps its directory: core_fileio.o).
obj() {
  local src="$1" o="$work/obj/$(echo "$1" | tr '/' '_' | sed 's/\.cpp$/.o/')"
  local extra=()
  # data/image_list.cpp holds stb_image's implementation, which passes a null buffer with length 0
  # to memcpy on some PNGs (UB by the letter, harmless), and whose JPEG bit reader, once a corrupt
  # scan has run it out of bits, refills its 32-bit buffer with shifts of up to 33 (UB by the
  # letter; x86 masks the count, so only the decoded values are garbage: no memory is touched
  # through them, as ASan checks on), and whose JPEG dequantization multiplies corrupt
  # coefficients past INT_MAX (stb_image.h:2197; the product only feeds the IDCT, whose output is
  # clamped to 0..255: garbage pixels, no memory touched through it). Those checks are off for that
  # file only.
  [ "$src" = data/image_list.cpp ] &&
    extra=(-fno-sanitize=nonnull-attribute,shift-exponent,signed-integer-overflow)
  (cd "$here" && "${cxx[@]}" "${flags[@]}" "${extra[@]}" -c "$src" -o "$o") || return 1
  echo "$o"
}

# run_one NAME CORPUS_DIR [libFuzzer options]
run_one() {
  local name="$1" corpus="$2"
  shift 2
  local limit=(-max_total_time="$seconds")
  [ -n "$runs" ] && limit=(-runs="$runs")
  echo "== fuzz_$name: $(ls "$corpus" | wc -l) seeds"
  "$work/fuzz_$name" "$corpus" -seed="$seed" "${limit[@]}" -artifact_prefix="$work/$name-" -print_final_stats=1 \
    -print_pcs=0 "$@" 2>&1 | grep -v '^INFO: Loaded\|^INFO: -max_len' | tail -n 30
  return "${PIPESTATUS[0]}"
}

# objs VAR SOURCE...: compiles each source, appending the objects to the array VAR; a failed
# compile stops the script.
objs() {
  local -n out="$1"
  shift
  local s p
  for s in "$@"; do
    p="$(obj "$s")" || { echo "run_fuzzers.sh: compiling $s failed" >&2; exit 1; }
    out+=("$p")
  done
}

status=0
core_objs=()
objs core_objs core/error.cpp core/fileio.cpp data/file_io.cpp

if [ "$target" = image_list ] || [ "$target" = all ]; then
  rm -rf "$work/corpus_image_list" && mkdir -p "$work/corpus_image_list"
  o=("${core_objs[@]}")
  objs o data/image_list.cpp data/dataset.cpp
  (cd "$here" && "${cxx[@]}" "${flags[@]}" -c tests/fuzzers/fuzz_image_list.cpp -o "$work/obj/fuzz_image_list.o")
  clang++ "$work/obj/fuzz_image_list.o" "${o[@]}" "${link[@]}" -o "$work/fuzz_image_list"
  # Seeds: a small PNG and JPEG (even first byte = image mode) and a list line (odd = list mode).
  /usr/bin/python3 - "$work/corpus_image_list" <<'PY'
import io, sys
from PIL import Image
out = sys.argv[1]
img = Image.new("RGB", (13, 7), (200, 30, 90))
for fmt in ("PNG", "JPEG"):
    b = io.BytesIO()
    img.save(b, fmt)
    open(f"{out}/seed_{fmt.lower()}", "wb").write(b"\x00" + b.getvalue())
open(f"{out}/seed_list", "wb").write(b"\x01a.jpg 1\nb.png 2\n")
PY
  # Past findings (tests/fuzzers/regressions/image_list): every run replays them first.
  cp "$here"/tests/fuzzers/regressions/image_list/* "$work/corpus_image_list/"
  run_one image_list "$work/corpus_image_list" -max_len=4096 -rss_limit_mb=2048 -timeout=10 || status=1
fi

if [ "$target" = idx ] || [ "$target" = all ]; then
  rm -rf "$work/corpus_idx" && mkdir -p "$work/corpus_idx"
  o=("${core_objs[@]}")
  objs o data/idx.cpp data/dataset.cpp
  (cd "$here" && "${cxx[@]}" "${flags[@]}" -c tests/fuzzers/fuzz_idx.cpp -o "$work/obj/fuzz_idx.o")
  clang++ "$work/obj/fuzz_idx.o" "${o[@]}" "${link[@]}" -o "$work/fuzz_idx"
  # Seeds: plain and gzip image and label files (first byte: 0 images, 1 labels), and a gzip bomb.
  /usr/bin/python3 - "$work/corpus_idx" <<'PY'
import gzip, struct, sys
out = sys.argv[1]
imgs = struct.pack(">IIII", 2051, 3, 4, 5) + bytes(range(60))
labs = struct.pack(">II", 2049, 3) + bytes([0, 1, 2])
for name, mode, body in (("img", 0, imgs), ("lab", 1, labs)):
    open(f"{out}/seed_{name}", "wb").write(bytes([mode]) + body)
    open(f"{out}/seed_{name}_gz", "wb").write(bytes([mode]) + gzip.compress(body))
    open(f"{out}/seed_{name}_gz2", "wb").write(bytes([mode]) + gzip.compress(body[:9]) + gzip.compress(body[9:]))
open(f"{out}/seed_bomb", "wb").write(b"\x00" + gzip.compress(imgs + bytes(1 << 20)))
PY
  run_one idx "$work/corpus_idx" -max_len=8192 -rss_limit_mb=1024 -timeout=10 || status=1
fi

if [ "$target" = config ] || [ "$target" = all ]; then
  rm -rf "$work/corpus_config" && mkdir -p "$work/corpus_config"
  o=()
  for s in $(cd "$here" && ls core/*.cpp kernels/*_cpu.cpp layers/*.cpp data/*.cpp optim/*.cpp tools/cli_common.cpp); do
    # Already built; the snapshot code is not on this path (and core/safetensors.cpp's recursive
    # Json type does not compile with clang 14's libstdc++ checks).
    case "$s" in core/error.cpp|core/fileio.cpp|data/file_io.cpp|core/safetensors.cpp|optim/snapshot.cpp) continue ;; esac
    objs o "$s"
  done
  (cd "$here" && "${cxx[@]}" "${flags[@]}" -c tests/fuzzers/fuzz_config_loader.cpp -o "$work/obj/fuzz_config_loader.o")
  clang++ "$work/obj/fuzz_config_loader.o" "${core_objs[@]}" "${o[@]}" "${link[@]}" -o "$work/fuzz_config"
  # Seeds: every shipped config as it is (real data paths: the sources fail on a missing file) and
  # with its data on small synthetic sources (the whole net is built), plus a repeat and an alias.
  /usr/bin/python3 - "$here/configs" "$work/corpus_config" <<'PY'
import glob, os, sys, yaml
src, out = sys.argv[1], sys.argv[2]
for p in sorted(glob.glob(f"{src}/*.yaml")):
    name = os.path.basename(p)
    text = open(p).read()
    open(f"{out}/raw_{name}", "w").write(text)
    cfg = yaml.safe_load(text)
    if not isinstance(cfg, dict):
        continue
    if "base" in cfg:  # load_config_text does not follow base: merge it here
        base = yaml.safe_load(open(os.path.join(src, cfg.pop("base"))))
        for k, v in cfg.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                base[k].update(v)
            else:
                base[k] = v
        cfg = base
    train = (cfg.get("data") or {}).get("train") or {}
    kind = train.get("source")
    shape = [1, 28, 28] if kind == "mnist" else [3, 32, 32] if kind == "cifar10" else [3, 227, 227]
    classes = 10 if kind in ("mnist", "cifar10") else 1000
    cfg["data"] = {ph: {"source": "synthetic", "shape": shape, "num_classes": classes, "num_samples": 4,
                        "batch_size": 2} for ph in ("train", "test")}
    open(f"{out}/synthetic_{name}", "w").write(yaml.safe_dump(cfg, sort_keys=False))
open(f"{out}/alias_repeat.yaml", "w").write("""name: a
data: {train: {source: synthetic, shape: [1, 4, 4], num_classes: 2, num_samples: 4, batch_size: 2}}
solver: {base_lr: 0.1, max_iter: 1}
vars: {N: 3}
layers:
  - {name: data, type: data, top: [&d data, label]}
  - {name: r0, type: relu, bottom: *d, top: r0}
  - repeat: {var: i, from: 1, to: "{N}", layers: [{name: "r{i}", type: relu, bottom: "r{i-1}", top: "r{i}"}]}
  - {name: fc, type: fc, bottom: r3, top: fc, num_output: 2}
  - {name: loss, type: softmax_loss, bottom: [fc, label], top: loss}
""")
PY
  run_one config "$work/corpus_config" -max_len=16384 -rss_limit_mb=2048 -timeout=20 || status=1
fi
exit "$status"
