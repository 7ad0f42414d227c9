#include "core/cuda_check.h"
#include "core/launch.cuh"
#include "kernels/sgd.h"
#include "kernels/sgd_math.h"

namespace dropnet {

namespace {

__global__ void sgd_kernel(int64_t n, float lr, float momentum, float wd, float* w, float* g, float* v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    sgd_step(w + i, g + i, v + i, lr, momentum, wd);
}

// The segment table goes through shared memory in tiles: each block loads a tile, rounding every
// segment's rates from double once per block instead of once per element, then runs its
// grid-stride loop over that tile's part of the arena and finds an element's segment by binary
// search. One tile holds the parameters of every net in configs/; more only means more tiles.
constexpr int kSegTile = 512;

__global__ void sgd_arena_kernel(const SgdSegment* segs, int nsegs, double lr, float momentum, double wd,
                                 float grad_scale, float clip_scale, float* w, float* g, float* v, const int* halt) {
  if (halt != nullptr && *halt != 0) return;  // the same for every thread: no barrier is left waiting
  __shared__ int64_t begin[kSegTile], end[kSegTile];
  __shared__ float seg_lr[kSegTile], seg_wd[kSegTile];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int t0 = 0; t0 < nsegs; t0 += kSegTile) {
    const int nt = min(kSegTile, nsegs - t0);
    __syncthreads();  // every thread is done with the previous tile
    for (int k = threadIdx.x; k < nt; k += blockDim.x) {
      const SgdSegment s = segs[t0 + k];
      begin[k] = s.offset;
      end[k] = s.offset + s.count;
      seg_lr[k] = static_cast<float>(lr * s.lr_mult);
      seg_wd[k] = static_cast<float>(wd * s.decay_mult);
    }
    __syncthreads();
    const int64_t lo = begin[0], hi = end[nt - 1];
    int64_t i = first;
    if (i < lo) i += (lo - i + stride - 1) / stride * stride;  // this thread's first index in the tile
    for (; i < hi; i += stride) {
      int a = 0, b = nt - 1;  // the last segment that begins at or before i
      while (a < b) {
        const int m = (a + b + 1) / 2;
        if (begin[m] <= i)
          a = m;
        else
          b = m - 1;
      }
      if (i < end[a]) sgd_scaled_step(w + i, g + i, v + i, seg_lr[a], momentum, seg_wd[a], grad_scale, clip_scale);
    }
  }
}

__global__ void scale_kernel(int64_t n, float a, float* x) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= a;
}

// Two-pass deterministic reduction: per-block partials, then one block sums them in order.
constexpr int kBlocks = 256;
__global__ void sumsq_partial(int64_t n, const float* x, double* part, int mode) {
  __shared__ double s[256];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = x[i];
    acc += mode == 0 ? static_cast<double>(v) * v : (isfinite(v) ? 0.0 : 1.0);
  }
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = s[0];
}

__global__ void sum_partials(const double* part, int n, double* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) s += part[i];
    out[0] = s;
  }
}

double reduce(int64_t n, const float* x, int mode, Stream stream) {
  // On the device the stream belongs to (the caller's current device), not cuda:0.
  const Device dev = Device::cuda(cuda_current_device());
  double* buf = static_cast<double*>(device_alloc(dev, (kBlocks + 1) * sizeof(double)));
  DN_LAUNCH(sumsq_partial, kBlocks, 256, 0, stream, n, x, buf, mode);
  DN_LAUNCH(sum_partials, 1, 1, 0, stream, buf, kBlocks, buf + kBlocks);
  double out = 0.0;
  DN_CUDA_CHECK(cudaMemcpyAsync(&out, buf + kBlocks, sizeof(double), cudaMemcpyDeviceToHost, stream));
  cuda_stream_wait_host(stream);
  device_free(dev, buf, (kBlocks + 1) * sizeof(double));
  return out;
}

}  // namespace

void sgd_update_cuda(int64_t n, float lr, float momentum, float weight_decay, float* w, float* g, float* v,
                     Stream stream) {
  DN_LAUNCH(sgd_kernel, grid_for(n), 256, 0, stream, n, lr, momentum, weight_decay, w, g, v);
}

void sgd_update_arena_cuda(const SgdSegment* device_segs, int nsegs, int64_t n, double lr, float momentum,
                           double weight_decay, float grad_scale, float clip_scale, float* w, float* g, float* v,
                           Stream stream, const int* halt) {
  DN_LAUNCH(sgd_arena_kernel, grid_for(n), 256, 0, stream, device_segs, nsegs, lr, momentum, weight_decay, grad_scale,
            clip_scale, w, g, v, halt);
}

void scale_cuda(int64_t n, float alpha, float* x, Stream stream) {
  DN_LAUNCH(scale_kernel, grid_for(n), 256, 0, stream, n, alpha, x);
}

double sumsq_cuda(int64_t n, const float* x, Stream stream) { return reduce(n, x, 0, stream); }
int64_t count_nonfinite_cuda(int64_t n, const float* x, Stream stream) {
  return static_cast<int64_t>(reduce(n, x, 1, stream));
}

}  // namespace dropnet
