// DN_CUBLAS_CHECK: a failing cuBLAS call reports the statement, file:line and cuBLAS's own
// status text. Only for .cu files and CUDA-enabled sources.
#pragma once

#include <string>

#include "core/error.h"
#include "kernels/cublas_api.h"

#define DN_CUBLAS_CHECK(stmt)                                                                \
  do {                                                                                       \
    cublasStatus_t dn_status_ = (stmt);                                                      \
    if (dn_status_ != CUBLAS_STATUS_SUCCESS)                                                 \
      ::dropnet::internal_error(__FILE__, __LINE__,                                          \
                                std::string(#stmt " failed: ") +                             \
                                    ::dropnet::cublas().status_string(dn_status_));          \
  } while (0)
