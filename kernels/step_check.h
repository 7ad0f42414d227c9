// The training checks of a CUDA net, on the device (optim/solver.cpp): a non-finite loss, a
// non-finite gradient and an out-of-range label are found by kernels on the compute stream and
// written into a StepCheck in device memory, which the host reads back only at display, test and
// snapshot points (and at the end of Solver::step). The first failure halts the run on the device:
// from then on the SGD update kernel leaves the weights and the momentum as they were (it reads
// `halt`), so the weights the host finds when it reads the failure back are those from before
// the failing iteration, as when the check stopped the run at once.
#pragma once

#include <climits>
#include <cstdint>

#include "core/device.h"

namespace dropnet {

enum StepFailure : int { kStepOk = 0, kStepLoss = 1, kStepGrad = 2, kStepLabel = 3 };

struct StepCheck {
  int halt;        // StepFailure of the first failure; sticky
  int record;      // the solver's record (iteration since the last read-back) of the failure; -1 until stamped
  int k;           // the sub-iteration (iter_size) of a loss or label failure; -1 until stamped
  int first_top;   // loss failure: the first non-finite top in the net's top table (INT_MAX: none)
  long long first_grad;  // gradient failure: the first non-finite arena element (LLONG_MAX: none)
  int label_pos;   // label failure: its position, value and the number of classes
  float label_value;
  int label_classes;
  int pad_;
};

inline StepCheck step_check_clear() { return {kStepOk, -1, -1, INT_MAX, LLONG_MAX, -1, 0.f, 0, 0}; }

// One top of the net, for the scan that names the first non-finite output.
struct TopRef {
  const float* data;
  int64_t count;
};

#if DROPNET_HAVE_CUDA
// Copies the net's loss values (loss_tops[j][0], j < nloss) to out[k * nloss + j]; when
// check_finite and the run has not halted, a non-finite sum_j weight[j] * value[j] (float, in
// order, as Net::forward sums it) halts it with kStepLoss. Stamps `k` on a halt without one.
void record_losses_cuda(const float* const* loss_tops, const float* weights, int nloss, int k, bool check_finite,
                        float* out, StepCheck* check, Stream stream);
// When this sub-iteration's loss halted the run (halt == kStepLoss, k stamped == k, record not yet
// stamped): the index of the first top of `tops` holding a non-finite value, into first_top.
void scan_tops_cuda(const TopRef* tops, int ntops, int k, StepCheck* check, Stream stream);
// When the run has not halted: the first non-finite element of the gradient arena halts it with
// kStepGrad. Then a halt without a record gets `record`.
void check_grads_cuda(int64_t n, const float* grads, int record, StepCheck* check, Stream stream);
#endif

}  // namespace dropnet
