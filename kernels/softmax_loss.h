// Softmax with cross-entropy loss (Caffe's SoftmaxWithLoss, normalization VALID) and top-k
// accuracy. `loss` and `accuracy` point to one float on the kernel's device.
#pragma once

#include "core/device.h"
#include "kernels/softmax_loss_math.h"
#include "kernels/step_check.h"

namespace dropnet {

// Label values must be integers in [0, classes) (or the ignore label): checked, error names the value.
void softmax_loss_forward_cpu(const SoftmaxParams& p, const float* x, const float* labels, float* prob, float* loss);
void softmax_loss_backward_cpu(const SoftmaxParams& p, const float* prob, const float* labels, float loss_weight,
                               float beta, float* dx);
void accuracy_forward_cpu(const SoftmaxParams& p, int top_k, const float* x, const float* labels, float* accuracy);

#if DROPNET_HAVE_CUDA
// The label check of the CUDA path: when the run has not halted and some label is neither an
// integer in [0, classes) nor the ignore label, halts it with kStepLabel and records the first
// such position, its value and the number of classes (the host reads it back and raises the
// error). The forward kernels below give a bad label's position a NaN loss and no accuracy hit
// instead of reading out of bounds.
void check_labels_cuda(const SoftmaxParams& p, const float* labels, StepCheck* check, Stream stream);
// `scratch` holds 2 * outer * inner floats (per-position losses / hits and validity), reduced
// deterministically.
void softmax_loss_forward_cuda(const SoftmaxParams& p, const float* x, const float* labels, float* prob,
                               float* scratch, float* loss, Stream stream);
void softmax_loss_backward_cuda(const SoftmaxParams& p, const float* prob, const float* labels, float loss_weight,
                                float beta, float* scratch, float* dx, Stream stream);
void accuracy_forward_cuda(const SoftmaxParams& p, int top_k, const float* x, const float* labels, float* scratch,
                           float* accuracy, Stream stream);
#endif

}  // namespace dropnet
