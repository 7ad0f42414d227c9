#!/usr/bin/env bash
# Installs dropnet's dependencies (Debian packages), configures (Ninja + ccache, Release) and
# builds. Idempotent: packages already present are not reinstalled; a configured build directory
# is reused. Usage: tools/setup.sh [--build-dir DIR] [--no-build] [-- extra cmake args]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$here/build"
do_build=1
cmake_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --) shift; cmake_args+=("$@"); break ;;
    *) echo "setup.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

packages=(build-essential cmake ninja-build ccache pkg-config
  libyaml-cpp-dev libspdlog-dev libfmt-dev libstb-dev libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin libopenblas-dev zlib1g-dev libcli11-dev
  dataset-fashion-mnist python3-numpy python3-torch python3-matplotlib python3-pil python3-yaml time
  clang libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The CUDA toolkit is optional: DROPNET_CUDA=AUTO enables the CUDA backend when nvcc is found.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S "$here" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]}"
elif [ ${#cmake_args[@]} -gt 0 ]; then
  cmake "$build_dir" "${cmake_args[@]}"
fi
if [ "$do_build" -eq 1 ]; then
  cmake --build "$build_dir" -j "$(nproc)"
fi
