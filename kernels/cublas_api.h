// cuBLAS, loaded when first used. Linking libcublas makes every process pay for it at start:
// ~150 MB resident (libcublasLt's relocations and data), CPU-only runs and `--version` included,
// more than LeNet's whole training run needs. So nothing links it: the first cuBLAS call (a
// layer with engine: cublas) dlopens it and resolves the few functions dropnet calls. In the
// emulated build (emu/) the emulated functions are linked in and taken directly.
// CUDA builds only (a .cu file includes this).
#pragma once

#include <cublas_v2.h>

namespace dropnet {

struct CublasApi {
  decltype(&cublasCreate) create;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSetStream) set_stream;
  decltype(&cublasSgemm) sgemm;
  // tf32 / bf16 compute types on FP32 data. The type is spelt out: cuBLAS 13 also declares a C++
  // overload taking a cudaDataType compute type (for old code), so &cublasGemmEx alone is ambiguous.
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
  decltype(&cublasGetStatusString) status_string;
};

// Loads cuBLAS on the first call (thread-safe); a library that cannot be loaded or lacks a
// function is an error naming it.
const CublasApi& cublas();
// Whether cublas() has loaded it in this process (a CPU run never does).
bool cublas_loaded();

}  // namespace dropnet
