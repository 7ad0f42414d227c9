// CPU SGEMM, row-major (kernels/gemm.h).
//
// sgemm_native_cpu is a GotoBLAS/BLIS-style kernel:
//   jc (NC columns of C) -> pc (KC of the k range; B block packed) -> ic (MC rows of C)
//     -> jr (NR-column micro-panels of packed B, each stays in L1) -> ir (MR rows) -> micro-kernel.
// The micro-kernel keeps an MR x NR tile of C in registers (AVX-512: 6 x 64 = 24 zmm
// accumulators; AVX2: 6 x 16; scalar: 4 x 4) and does one broadcast of A and NR/W vector loads
// of B per k step. A is never packed: MR = 6 rows are read in place through (row, k) strides,
// which serves both op(A) layouts and saves the pack pass that dominates small-K and small-M
// shapes. B is packed into zero-padded, k-major micro-panels (a transpose for trans_b; reading
// B in place for small M measured slower than packing: the packed panel is L1-resident and
// conflict-free). Edges: rows are split into blocks of MR or MR - 1 rows, each run by the kernel
// instantiated for its row count; the last column panel runs the one for its vector count with a
// lane mask on C.
//
// Reduced precision (tf32 / bf16, kernels/precision_math.h): each packed B panel is rounded right
// after it is packed, while it is in L1; A, read in place at FP32, is instead packed into a
// rounded, row-major MC x KC copy per block (a pass over A per NC columns of C). The micro-kernels
// are the FP32 ones: the rounded operands are floats, products and sums stay FP32.
//
// Threading: outside an OpenMP parallel region C is split over N and/or M into chunks handed out
// dynamically (each runs the serial algorithm, packing its own B), or, when C is too small to
// split evenly and K is long (weight gradients: 20 x 25 x 36864), K is split into per-thread
// partial products reduced at the end; a cost model of the micro-tiles picks the split. Inside a
// parallel region everything runs on the calling thread.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "kernels/gemm.h"
#include "kernels/precision_math.h"
#include "kernels/gemm_check.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
// GCC 12's own intrinsics trip -Wmaybe-uninitialized (_mm512_undefined_ps, GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace dropnet {

namespace {

std::atomic<CpuGemmImpl> g_cpu_gemm_impl{CpuGemmImpl::Native};

// ---- vector abstraction -------------------------------------------------------------------

#if defined(__AVX512F__)
struct Simd {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int kW = 16;  // floats per vector
  static constexpr int kMr = 6;  // micro-tile rows
  static constexpr int kNv = 4;  // micro-tile vectors per row (NR = 64)
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static Mask mask(int64_t n) { return n >= kW ? Mask(0xFFFF) : Mask((1u << n) - 1u); }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct Simd {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int kW = 8;
  static constexpr int kMr = 6;
  static constexpr int kNv = 2;  // 6 x 16: 12 accumulators of the 16 ymm registers
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store(float* p, V v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static Mask mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(n, kW))),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
};
#else
struct Simd {
  using V = float;
  using Mask = bool;
  static constexpr int kW = 1;
  static constexpr int kMr = 4;
  static constexpr int kNv = 4;
  static V zero() { return 0.f; }
  static V set1(float x) { return x; }
  static V load(const float* p) { return *p; }
  static V load(const float* p, Mask m) { return m ? *p : 0.f; }
  static void store(float* p, V v) { *p = v; }
  static void store(float* p, V v, Mask m) {
    if (m) *p = v;
  }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V mul(V a, V b) { return a * b; }
  static V add(V a, V b) { return a + b; }
  static Mask mask(int64_t n) { return n > 0; }
};
#endif

constexpr int kW = Simd::kW;
constexpr int kMr = Simd::kMr;
constexpr int kNv = Simd::kNv;
constexpr int64_t kNr = int64_t(kW) * kNv;

// Cache blocking: the ir loop streams MR x KC slivers of A past one KC x NR panel of packed B
// (64 KiB at KC = 256, NR = 64: it lives in L1/L2; the 6 x 64 kernel needs only 256 bytes of B
// per 12 cycles, and KC = 128, 192, 384 measured the same on Zen 5); an MC x KC block of A
// (144 KiB) stays in the 1 MiB L2, the KC x NC block of packed B (1 MiB) in L2/L3 (NC from 512
// to 4096 measured the same).
constexpr int64_t kKc = 256;
constexpr int64_t kMc = 144;  // a multiple of MR
constexpr int64_t kNc = 1024;
static_assert(kMc % kMr == 0);
// Problems smaller than this (2*M*N*K) run on one thread: the fork/join costs more.
constexpr double kMinParallelFlops = 4.0e6;

// ---- micro-kernel -------------------------------------------------------------------------

// C[MR x NV*W] = alpha * sum_p A(r, p) * B(p, :) + beta * C; A(r, p) = a[r*rsa + p*csa], row p
// of B starts at b + p*rsb. Only the first `last_lanes` lanes of the last vector of each C row
// are read or written. beta == 0 never reads C.
template <int MR, int NV>
void micro_kernel(int64_t kc, const float* __restrict a, int64_t rsa, int64_t csa,
                  const float* __restrict b, int64_t rsb, float* __restrict c, int64_t ldc,
                  float alpha, float beta, int64_t last_lanes) {
  using V = Simd::V;
  const Simd::Mask last = Simd::mask(last_lanes);
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = Simd::zero();

#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = Simd::load(b + v * kW);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const V av = Simd::set1(a[r * rsa]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = Simd::fma(av, bv[v], acc[r][v]);
    }
    a += csa;
    b += rsb;
  }

  const V va = Simd::set1(alpha);
  const V vb = Simd::set1(beta);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    float* cr = c + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      V x = Simd::mul(acc[r][v], va);
      if (v + 1 < NV) {
        if (beta == 1.f) x = Simd::add(x, Simd::load(cr + v * kW));
        else if (beta != 0.f) x = Simd::fma(vb, Simd::load(cr + v * kW), x);
        Simd::store(cr + v * kW, x);
      } else {
        if (beta == 1.f) x = Simd::add(x, Simd::load(cr + v * kW, last));
        else if (beta != 0.f) x = Simd::fma(vb, Simd::load(cr + v * kW, last), x);
        Simd::store(cr + v * kW, x, last);
      }
    }
  }
}

using MicroKernel = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*,
                             int64_t, float, float, int64_t);

template <int MR, int... NVs>
constexpr auto kernel_row(std::integer_sequence<int, NVs...>) {
  return std::array<MicroKernel, kNv>{&micro_kernel<MR, NVs + 1>...};
}
template <int... MRs>
constexpr auto kernel_table(std::integer_sequence<int, MRs...>) {
  return std::array<std::array<MicroKernel, kNv>, kMr>{
      kernel_row<MRs + 1>(std::make_integer_sequence<int, kNv>{})...};
}
// kKernels[mr - 1][nv - 1]: mr rows, nv vectors.
constexpr auto kKernels = kernel_table(std::make_integer_sequence<int, kMr>{});

// ---- packing of B -------------------------------------------------------------------------
// Packed layout of a KC x NC block: micro-panel q (columns q*NR ..) at out + q*kc*NR, k-major,
// row stride nv*W where nv = its vector count (NR except for the last panel), zero-padded.

inline int64_t panel_vectors(int64_t nr) { return (nr + kW - 1) / kW; }

// One panel of op(B) = B (row p at b + p*ldb), nr columns.
void pack_panel_b_n(const float* b, int64_t ldb, int64_t kc, int64_t nr, float* out) {
  const int64_t nv = panel_vectors(nr);
  const int64_t w = nv * kW;
  const Simd::Mask last = Simd::mask(nr - (nv - 1) * kW);
  for (int64_t p = 0; p < kc; ++p) {
    const float* src = b + p * ldb;
    float* dst = out + p * w;
    for (int64_t v = 0; v + 1 < nv; ++v) Simd::store(dst + v * kW, Simd::load(src + v * kW));
    Simd::store(dst + (nv - 1) * kW, Simd::load(src + (nv - 1) * kW, last));
  }
}

#if defined(__AVX512F__)
// In-register transpose of a 16 x 16 block: r[i] lane j -> r[j] lane i.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + c], lane q: rows 4g..4g+3 at column 4q + c.
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  // 4 x 4 transpose of 128-bit lanes across u[c], u[4 + c], u[8 + c], u[12 + c].
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
    const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[0 + c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
}
#endif

// One panel of op(B) = B^T: column j of the panel is row j of the stored B (b + j*ldb),
// op(B)(p, j) = b[j*ldb + p].
void pack_panel_b_t(const float* b, int64_t ldb, int64_t kc, int64_t nr, float* out) {
  const int64_t nv = panel_vectors(nr);
  const int64_t w = nv * kW;
#if defined(__AVX512F__)
  for (int64_t g = 0; g < nv; ++g) {
    const int64_t rows = std::min<int64_t>(16, nr - g * 16);
    for (int64_t p0 = 0; p0 < kc; p0 += 16) {
      const int64_t kk = std::min<int64_t>(16, kc - p0);
      const __mmask16 km = Simd::mask(kk);
      __m512 r[16];
      for (int64_t i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(km, b + (g * 16 + i) * ldb + p0) : _mm512_setzero_ps();
      transpose16(r);
      float* dst = out + p0 * w + g * 16;
      for (int64_t c = 0; c < kk; ++c) _mm512_storeu_ps(dst + c * w, r[c]);
    }
  }
#else
  for (int64_t p = 0; p < kc; ++p) {
    float* dst = out + p * w;
    for (int64_t j = 0; j < nr; ++j) dst[j] = b[j * ldb + p];
    for (int64_t j = nr; j < w; ++j) dst[j] = 0.f;
  }
#endif
}

// ---- workspace ----------------------------------------------------------------------------

// A grow-only, 64-byte aligned float buffer.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(p_); }
  float* get(size_t n) {
    if (n > cap_) {
      std::free(p_);
      size_t bytes = ((n * sizeof(float)) + 63) / 64 * 64;
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      DN_CHECK(p_ != nullptr, "out of memory for a {} byte SGEMM workspace", bytes);
      cap_ = n;
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  size_t cap_ = 0;
};

// Packed B, one per thread (OpenMP workers keep theirs across calls).
thread_local AlignedBuffer t_bpack;
// Rounded A blocks (tf32 / bf16 only), one per thread.
thread_local AlignedBuffer t_apack;
// Per-thread partial products of the K-split, owned by the calling thread.
thread_local AlignedBuffer t_ksplit;

// ---- serial driver ------------------------------------------------------------------------

int64_t round_up(int64_t x, int64_t q) { return (x + q - 1) / q * q; }

// Rounds n floats in place to `prec` (a packed panel, still in L1).
void round_floats(Precision prec, float* x, int64_t n) {
  if (prec == Precision::TF32) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] = precision::round_tf32(x[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] = precision::round_bf16(x[i]);
  }
}

// op(A) rows [0, mc), k [0, kc) of the block at `a` (strides rsa, csa), rounded to `prec`, into
// `out` row-major (row stride kc).
void pack_a_rounded(Precision prec, const float* a, int64_t rsa, int64_t csa, int64_t mc, int64_t kc, float* out) {
  for (int64_t i = 0; i < mc; ++i) {
    const float* src = a + i * rsa;
    float* dst = out + i * kc;
    if (prec == Precision::TF32)
      for (int64_t p = 0; p < kc; ++p) dst[p] = precision::round_tf32(src[p * csa]);
    else
      for (int64_t p = 0; p < kc; ++p) dst[p] = precision::round_bf16(src[p * csa]);
  }
}

// C = alpha * op(A) op(B) + beta * C on one thread; m, n, k > 0.
void gemm_serial(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                 Precision prec) {
  const bool rounded = prec != Precision::FP32;
  const int64_t a_rs = ta ? 1 : lda, a_cs = ta ? lda : 1;
  const int64_t kc_max = std::min(k, kKc);
  const int64_t nc_max = std::min(n, kNc);
  // Row blocks of at most MC rows, of equal size (in MR multiples) so that none is thin.
  const int64_t nmc = (m + kMc - 1) / kMc;
  const int64_t mc_step = round_up((m + nmc - 1) / nmc, kMr);
  // With a single row block each B panel is packed right before its use, while it is in L1;
  // otherwise the whole KC x NC block is packed up front.
  const bool fused = nmc == 1;
  float* bpack = t_bpack.get(static_cast<size_t>(kc_max * (fused ? kNr : (nc_max + kNr - 1) / kNr * kNr)));
  float* apack = rounded ? t_apack.get(static_cast<size_t>(std::min(m, mc_step) * kc_max)) : nullptr;

  for (int64_t jc = 0; jc < n; jc += kNc) {
    const int64_t nc = std::min(kNc, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKc) {
      const int64_t kc = std::min(kKc, k - pc);
      const float beta_eff = pc == 0 ? beta : 1.f;
      const float* bblk = tb ? b + jc * ldb + pc : b + pc * ldb + jc;
      auto pack_panel = [&](int64_t jr, float* dst) {
        const int64_t nr = std::min(kNr, nc - jr);
        if (tb) pack_panel_b_t(bblk + jr * ldb, ldb, kc, nr, dst);
        else pack_panel_b_n(bblk + jr, ldb, kc, nr, dst);
        if (rounded) round_floats(prec, dst, kc * panel_vectors(nr) * kW);
      };
      if (!fused)
        for (int64_t jr = 0; jr < nc; jr += kNr) pack_panel(jr, bpack + (jr / kNr) * kc * kNr);
      for (int64_t ic = 0; ic < m; ic += mc_step) {
        const int64_t mc = std::min(mc_step, m - ic);
        const float* ablk = ta ? a + pc * lda + ic : a + ic * lda + pc;
        int64_t rsa = a_rs, csa = a_cs;
        if (rounded) {
          pack_a_rounded(prec, ablk, a_rs, a_cs, mc, kc, apack);
          ablk = apack;
          rsa = kc;
          csa = 1;
        }
        for (int64_t jr = 0; jr < nc; jr += kNr) {
          const int64_t nr = std::min(kNr, nc - jr);
          const int64_t nv = panel_vectors(nr);
          const float* bp = fused ? bpack : bpack + (jr / kNr) * kc * kNr;
          if (fused) pack_panel(jr, bpack);
          float* cblk = c + ic * ldc + jc + jr;
          // Row blocks of MR or MR - 1 rows (M = 20 -> 5,5,5,5 rather than 6,6,6,2): a thin
          // last block would run a latency-bound kernel with few accumulators.
          const int64_t nblk = (mc + kMr - 1) / kMr, base = mc / nblk, extra = mc % nblk;
          for (int64_t blk = 0, ir = 0; blk < nblk; ++blk) {
            const int64_t mr = base + (blk < extra ? 1 : 0);
            kKernels[mr - 1][nv - 1](kc, ablk + ir * rsa, rsa, csa, bp, nv * kW, cblk + ir * ldc, ldc,
                                     alpha, beta_eff, nr - (nv - 1) * kW);
            ir += mr;
          }
        }
      }
    }
  }
}

// C = beta * C (beta == 0 writes zeros without reading C).
void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.f) std::fill(row, row + n, 0.f);
    else if (beta != 1.f)
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
  }
}

// ---- parallel partition -------------------------------------------------------------------

// Estimated time of one thread's m x n x k block, in vector-FMA issue slots per k step summed
// over the micro-tiles as gemm_serial cuts them: a tile of mr x nv accumulators costs mr * nv
// slots, but no less than the FMA latency chain allows (kMinAccumulators). Packing B costs about
// a quarter slot per element.
constexpr double kMinAccumulators = 8.0;
constexpr double kPackCostPerElement = 0.25;

double tile_cost(int64_t mr, int64_t nv) { return std::max(double(mr * nv), kMinAccumulators); }

double block_cost(int64_t m, int64_t n, int64_t k) {
  const int64_t nblk = (m + kMr - 1) / kMr, base = m / nblk, extra = m % nblk;
  const int64_t full = n / kNr, rest_nv = panel_vectors(n % kNr);
  double per_k = 0.0;
  for (int64_t mr : {base, base + 1}) {
    const int64_t count = mr == base ? nblk - extra : extra;
    if (count == 0 || mr == 0) continue;
    per_k += double(count) * (double(full) * tile_cost(mr, kNv) + (rest_nv ? tile_cost(mr, rest_nv) : 0.0));
  }
  return double(k) * (per_k + kPackCostPerElement * double(n));
}

struct Plan {
  int tm = 1, tn = 1;   // threads along M and N (tm * tn of them)
  bool ksplit = false;  // instead: every thread takes a slice of K
  int64_t mchunk = 0, nchunk = 0;
};

Plan make_plan(int threads, int64_t m, int64_t n, int64_t k) {
  Plan best;
  double best_cost = block_cost(m, n, k);  // one thread
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm) continue;
    const int tn = threads / tm;
    const int64_t mchunk = round_up((m + tm - 1) / tm, kMr);
    // Column chunks in whole panels or in vectors, whichever balances better.
    for (int64_t quantum : {kNr, int64_t(kW)}) {
      const int64_t nchunk = tn == 1 ? n : round_up((n + tn - 1) / tn, quantum);
      if ((m + mchunk - 1) / mchunk < tm || (n + nchunk - 1) / nchunk < tn) continue;
      const double cost = block_cost(std::min(m, mchunk), std::min(n, nchunk), k);
      if (cost < best_cost * 0.999) {
        best_cost = cost;
        best = Plan{tm, tn, false, mchunk, nchunk};
      }
    }
  }
  // K split: every thread computes an m x n partial product, reduced afterwards (a pass that
  // reads T partials: about one slot per element and thread).
  if (k >= 2 * kKc * threads) {
    const double cost = block_cost(m, n, (k + threads - 1) / threads) + double(m) * double(n) * threads;
    if (cost < best_cost * 0.9) best = Plan{1, 1, true, m, n};
  }
  return best;
}

}  // namespace

void set_cpu_gemm_impl(CpuGemmImpl impl) { g_cpu_gemm_impl.store(impl); }
CpuGemmImpl cpu_gemm_impl() { return g_cpu_gemm_impl.load(); }

void sgemm_native_cpu(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc) {
  sgemm_native_cpu_prec(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, Precision::FP32);
}

void sgemm_native_cpu_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                           const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                           float* c, int64_t ldc, Precision prec) {
  gemm_check_args("sgemm_native_cpu", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads <= 1 || 2.0 * double(m) * double(n) * double(k) < kMinParallelFlops) {
    gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, prec);
    return;
  }
  const Plan plan = make_plan(threads, m, n, k);
  if (plan.tm * plan.tn == 1 && !plan.ksplit) {
    gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, prec);
    return;
  }

  if (!plan.ksplit) {
    // Each of the plan's column blocks is cut into up to kChunksPerBlock whole-panel chunks,
    // handed out dynamically: a thread the OS delays (these machines are shared) leaves its
    // chunks to the others instead of stalling the whole call.
    constexpr int64_t kChunksPerBlock = 4;
    const int64_t nchunk = plan.nchunk >= kChunksPerBlock * kNr
                               ? round_up((plan.nchunk + kChunksPerBlock - 1) / kChunksPerBlock, kNr)
                               : plan.nchunk;
    const int64_t chunks_m = (m + plan.mchunk - 1) / plan.mchunk, chunks_n = (n + nchunk - 1) / nchunk;
#pragma omp parallel for num_threads(plan.tm * plan.tn) schedule(dynamic, 1)
    for (int64_t chunk = 0; chunk < chunks_m * chunks_n; ++chunk) {
      const int64_t i0 = (chunk / chunks_n) * plan.mchunk, j0 = (chunk % chunks_n) * nchunk;
      const int64_t mb = std::min(plan.mchunk, m - i0), nb = std::min(nchunk, n - j0);
      const float* ab = trans_a ? a + i0 : a + i0 * lda;
      const float* bb = trans_b ? b + j0 * ldb : b + j0;
      gemm_serial(trans_a, trans_b, mb, nb, k, alpha, ab, lda, bb, ldb, beta, c + i0 * ldc + j0, ldc, prec);
    }
    return;
  }

  // K split: partial products P_t (m x n, row stride n) of K slices, then C = alpha sum P_t + beta C.
  float* partial = t_ksplit.get(static_cast<size_t>(threads) * m * n);
#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t kchunk = round_up((k + nt - 1) / nt, 16);
    const int64_t k0 = std::min(k, t * kchunk), kb = std::min(kchunk, k - k0);
    float* pt = partial + t * m * n;
    if (kb > 0) {
      const float* ab = trans_a ? a + k0 * lda : a + k0;
      const float* bb = trans_b ? b + k0 : b + k0 * ldb;
      gemm_serial(trans_a, trans_b, m, n, kb, 1.f, ab, lda, bb, ldb, 0.f, pt, n, prec);
    } else {
      std::fill(pt, pt + m * n, 0.f);
    }
#pragma omp barrier
    const int64_t rows = (m + nt - 1) / nt;
    for (int64_t i = t * rows; i < std::min(m, (t + 1) * rows); ++i) {
      float* crow = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) {
        float s = 0.f;
        for (int u = 0; u < nt; ++u) s += partial[(u * m + i) * n + j];
        crow[j] = beta == 0.f ? alpha * s : alpha * s + beta * crow[j];
      }
    }
  }
}

void sgemm_openblas_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                         int64_t ldc, Precision prec) {
  if (prec == Precision::FP32 || m == 0 || n == 0 || k == 0) {
    sgemm_openblas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  gemm_check_args("sgemm_openblas", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  // OpenBLAS cannot round as it packs: multiply rounded, contiguous copies of the stored A and B.
  const auto rounded_copy = [prec](const float* x, int64_t rows, int64_t cols, int64_t ld) {
    std::vector<float> out(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t q = 0; q < cols; ++q) out[r * cols + q] = precision::round(prec, x[r * ld + q]);
    return out;
  };
  const int64_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  const std::vector<float> ar = rounded_copy(a, trans_a ? k : m, a_cols, lda);
  const std::vector<float> br = rounded_copy(b, trans_b ? n : k, b_cols, ldb);
  sgemm_openblas(trans_a, trans_b, m, n, k, alpha, ar.data(), a_cols, br.data(), b_cols, beta, c, ldc);
}

void sgemm_openblas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc) {
  gemm_check_args("sgemm_openblas", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  if (m == 0 || n == 0) return;
  constexpr int64_t kMaxInt = std::numeric_limits<blasint>::max();
  DN_CHECK(m <= kMaxInt && n <= kMaxInt && k <= kMaxInt && lda <= kMaxInt && ldb <= kMaxInt && ldc <= kMaxInt,
           "sgemm_openblas: sizes exceed OpenBLAS's {}-bit integers", sizeof(blasint) * 8);
  // Same threading contract as the native kernel: OpenMP's thread count outside a parallel
  // region. (Debian's OpenBLAS runs its own pthreads; its count is a process-wide setting that
  // is left alone inside parallel regions, where changing it would race.)
  if (!omp_in_parallel()) {
    const int want = omp_get_max_threads();
    if (openblas_get_num_threads() != want) openblas_set_num_threads(want);
  }
  if (k == 0) {  // BLAS leaves this to the implementation: keep beta == 0 from reading C.
    scale_c(m, n, beta, c, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

void sgemm_cpu(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  sgemm_cpu_prec(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, Precision::FP32);
}

void sgemm_cpu_prec(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, Precision prec) {
  if (cpu_gemm_impl() == CpuGemmImpl::OpenBlas)
    sgemm_openblas_prec(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, prec);
  else
    sgemm_native_cpu_prec(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, prec);
}

}  // namespace dropnet
