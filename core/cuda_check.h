// The one check header: a failing CUDA runtime, cuBLAS, cuDNN or NCCL call throws an internal
// error naming the statement, file:line and the library's own text for the status.
//
//   DN_CUDA_CHECK(stmt)    cudaError_t,    cudaGetErrorString
//   DN_CUBLAS_CHECK(stmt)  cublasStatus_t, the lazily loaded cuBLAS's text (kernels/cublas_api.h)
//   DN_CUDNN_CHECK(stmt)   cudnnStatus_t,  cudnnGetErrorString
//   DN_NCCL_CHECK(stmt)    ncclResult_t,   nccl_error_text (dist/nccl_comm.cu: NCCL's text and the
//                                          thread's last NCCL error)
//
// Only <cuda_runtime.h> is included here: each library's macro needs that library's header (and,
// for cuBLAS and NCCL, the text function named above) where it is used. Kernel launches are
// checked by DN_LAUNCH (core/launch.cuh) itself.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

#define DN_STATUS_CHECK_(stmt, text, ok, describe)                                                   \
  do {                                                                                               \
    const auto dn_status_ = (stmt);                                                                  \
    if (dn_status_ != (ok))                                                                          \
      ::dropnet::internal_error(__FILE__, __LINE__, std::string(text " failed: ") + describe(dn_status_)); \
  } while (0)

#define DN_CUDA_CHECK(stmt) DN_STATUS_CHECK_(stmt, #stmt, cudaSuccess, cudaGetErrorString)
#define DN_CUBLAS_CHECK(stmt) DN_STATUS_CHECK_(stmt, #stmt, CUBLAS_STATUS_SUCCESS, ::dropnet::cublas().status_string)
#define DN_CUDNN_CHECK(stmt) DN_STATUS_CHECK_(stmt, #stmt, CUDNN_STATUS_SUCCESS, cudnnGetErrorString)
#define DN_NCCL_CHECK(stmt) DN_STATUS_CHECK_(stmt, #stmt, ncclSuccess, nccl_error_text)

// After a raw <<<...>>> launch (benches; the library launches with DN_LAUNCH): catches bad launch
// configurations immediately.
#define DN_CUDA_LAUNCH_CHECK() DN_CUDA_CHECK(cudaGetLastError())
