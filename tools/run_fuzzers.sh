#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan + UBSan) and runs each for a bounded time.
# Usage: tools/run_fuzzers.sh [--seconds 60 | --runs N] [--seed 1] [--workdir DIR]   (--seed 0: random)
# --runs with a fixed seed is deterministic (CI); --seconds depends on the machine's speed.
# Exit 0 when no finding; non-zero (and the crashing input kept in WORKDIR) otherwise.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds=60
runs=""
seed=1
work="${TMPDIR:-/tmp}/dropnet-fuzz"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --workdir) work="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "run_fuzzers.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
command -v clang++ >/dev/null || { echo "run_fuzzers.sh: clang++ not found (Debian: clang)"; exit 77; }
rm -rf "$work/corpus"
mkdir -p "$work/corpus"
bin="$work/fuzz_image_list"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$here" -I/usr/include/stb)
# data/image_list.cpp holds stb_image's implementation, which passes a null buffer with length 0
# to memcpy on some PNGs (UB by the letter, harmless): that one check is off for that file only.
clang++ "${flags[@]}" -fno-sanitize=nonnull-attribute -c "$here/data/image_list.cpp" -o "$work/image_list.o"
(cd "$here" && clang++ "${flags[@]}" tests/fuzzers/fuzz_image_list.cpp data/file_io.cpp data/dataset.cpp \
  core/error.cpp "$work/image_list.o" -lfmt -lspdlog -lz -o "$bin")
# Seeds: a small PNG and JPEG (even first byte = image mode) and a list line (odd = list mode).
/usr/bin/python3 - "$work/corpus" <<'PY'
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
limit=(-max_total_time="$seconds")
[ -n "$runs" ] && limit=(-runs="$runs")
"$bin" "$work/corpus" -seed="$seed" "${limit[@]}" -max_len=4096 -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$work/" -print_final_stats=1 2>&1 | tail -n 25
