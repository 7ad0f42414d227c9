// Launch plans of the tiled kernels (gemm_tile.cuh): the dense SGEMM (gemm.cu) and the
// implicit-GEMM convolution (conv_igemm.cu): tile (64 or 128), grid, K split. Plain host code, so
// that the CPU emulation tests (tests/emu_*.cpp) launch exactly what the .cu files launch on a GPU
// with the same number of SMs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <utility>

#include "kernels/conv_math.h"

namespace dropnet::tile_plan {

constexpr int kPlanBk = 8;  // tile::kBk (gemm_tile.cuh): the K step splits are rounded to

// K per split when K = k is cut into `splits` pieces: rounded up to the tile's K step (`step`:
// kPlanBk for the SIMT tiles, 32 for the tensor-core tiles of gemm_mma.cuh).
inline int k_per_split(int64_t k, int splits, int step = kPlanBk) {
  return static_cast<int>(((k + splits - 1) / splits + step - 1) / step * step);
}

// How many splits of k_per_split cover K = k.
inline int splits_covering(int64_t k, int k_per_split) {
  return static_cast<int>((k + k_per_split - 1) / k_per_split);
}

// K split of a grid of `tiles` blocks over K = k: split while the grid covers less than ~2 waves
// and every split keeps at least 256 k (32 steps) to amortize its partial tile, at most 64.
// Returns {splits, k per split (a multiple of `step`)}.
inline std::pair<int, int> split_k(int64_t tiles, int64_t k, int sms, int step = kPlanBk) {
  int splits = 1;
  if (tiles < 2 * sms && k >= 512)
    splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({(2 * sms + tiles - 1) / tiles, k / 256, 64})));
  if (k <= 0) return {1, 0};
  const int kps = k_per_split(k, splits, step);
  return {splits_covering(k, kps), kps};
}

// Dense SGEMM (C is m x n, K = k): 128 x 128 tiles when their grid fills every SM, else 64 x 64;
// grid z = the K splits.
struct GemmPlan {
  int tile = 64;
  unsigned x = 1, y = 1;
  int splits = 1, k_per_split = 0;
};

inline GemmPlan plan_gemm(int64_t m, int64_t n, int64_t k, int sms) {
  GemmPlan pl;
  pl.tile = ((m + 127) / 128) * ((n + 127) / 128) >= sms ? 128 : 64;
  pl.x = static_cast<unsigned>((n + pl.tile - 1) / pl.tile);
  pl.y = static_cast<unsigned>((m + pl.tile - 1) / pl.tile);
  std::tie(pl.splits, pl.k_per_split) = split_k(int64_t(pl.x) * pl.y, k, sms);
  return pl;
}

// Implicit-GEMM convolution, per direction: the GEMM extents (per group), tile, grid.
struct Grid {
  int64_t m = 0, n = 0, k = 0;  // the GEMM (per group)
  int tile = 64;
  unsigned x = 1, y = 1, z = 1;
};

struct ConvPlan {
  Grid fwd, bwd_data, bwd_filter;
  int splits = 1;       // filter gradient: K splits (grid z = group * splits)
  int k_per_split = 0;  // filter gradient: K per split, a multiple of kPlanBk
};

// The grid of an m x n GEMM cut into tile x tile blocks, z planes.
inline Grid tiled_grid(int64_t m, int64_t n, int64_t k, int64_t z, int tile) {
  return Grid{m, n, k, tile, static_cast<unsigned>((n + tile - 1) / tile), static_cast<unsigned>((m + tile - 1) / tile),
              static_cast<unsigned>(z)};
}

// 128 x 128 tiles when M is large enough and they still fill every SM, else 64 x 64.
inline Grid make_grid(int64_t m, int64_t n, int64_t k, int64_t z, int sms) {
  const bool big = m >= 128 && ((m + 127) / 128) * ((n + 127) / 128) * z >= sms;
  return tiled_grid(m, n, k, z, big ? 128 : 64);
}

// The filter gradient's grid: an m x n GEMM per group whose long K is split (partial tiles summed
// in order); z = groups x splits. Returns {grid, {splits, k per split}}.
inline std::pair<Grid, std::pair<int, int>> split_grid(int64_t m, int64_t n, int64_t k, int64_t groups, int sms) {
  Grid g = make_grid(m, n, k, groups, sms);
  const std::pair<int, int> split = split_k(int64_t(g.x) * g.y * groups, k, sms);
  g.z = static_cast<unsigned>(groups * split.first);
  return {g, split};
}

inline ConvPlan plan_conv(const ConvParams& p, int sms) {
  const int64_t ohw = p.out_h * p.out_w, cg = p.c / p.group, og = p.out_c / p.group, kg = cg * p.kh * p.kw;
  ConvPlan pl;
  pl.fwd = make_grid(og, p.n * ohw, kg, p.group, sms);
  pl.bwd_data = make_grid(cg, p.n * p.h * p.w, og * p.kh * p.kw, p.group, sms);
  // Filter gradient: M = og, N = kg, K = n * ohw (long).
  std::pair<int, int> split;
  std::tie(pl.bwd_filter, split) = split_grid(og, kg, p.n * ohw, p.group, sms);
  std::tie(pl.splits, pl.k_per_split) = split;
  return pl;
}

}  // namespace dropnet::tile_plan
