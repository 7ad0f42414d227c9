#include "kernels/cublas_api.h"

#include <atomic>
#include <string>

#if !DROPNET_CUDA_EMU
#include <dlfcn.h>
#endif

#include "core/error.h"

namespace dropnet {

namespace {

std::atomic<bool> g_loaded{false};

#define DN_CUBLAS_NAME2(x) #x
#define DN_CUBLAS_NAME(x) DN_CUBLAS_NAME2(x)  // the exported name: cublasCreate is cublasCreate_v2

CublasApi load() {
  CublasApi api{};
#if DROPNET_CUDA_EMU
  api.create = &cublasCreate;
  api.set_math_mode = &cublasSetMathMode;
  api.set_stream = &cublasSetStream;
  api.sgemm = &cublasSgemm;
  api.gemm_ex = &cublasGemmEx;
  api.status_string = &cublasGetStatusString;
#else
  const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  std::string tried = soname;
#ifdef DROPNET_CUDA_LIB_DIR
  if (lib == nullptr) {  // not on the loader's path: the toolkit dropnet was built with
    const std::string path = std::string(DROPNET_CUDA_LIB_DIR) + "/" + soname;
    lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    tried += " and " + path;
  }
#endif
  if (lib == nullptr) {
    const char* why = dlerror();
    throw Error(ErrorKind::Input, "cannot load cuBLAS (tried " + tried + "): " + (why ? why : "unknown error") +
                                      "; engine: cublas needs the CUDA toolkit's cuBLAS (engine: native does not)");
  }
  auto resolve = [&](const char* name) {
    void* f = dlsym(lib, name);
    if (f == nullptr) throw Error(ErrorKind::Input, "cuBLAS (" + soname + ") has no function " + name);
    return f;
  };
  api.create = reinterpret_cast<decltype(api.create)>(resolve(DN_CUBLAS_NAME(cublasCreate)));
  api.set_math_mode = reinterpret_cast<decltype(api.set_math_mode)>(resolve(DN_CUBLAS_NAME(cublasSetMathMode)));
  api.set_stream = reinterpret_cast<decltype(api.set_stream)>(resolve(DN_CUBLAS_NAME(cublasSetStream)));
  api.sgemm = reinterpret_cast<decltype(api.sgemm)>(resolve(DN_CUBLAS_NAME(cublasSgemm)));
  api.gemm_ex = reinterpret_cast<decltype(api.gemm_ex)>(resolve(DN_CUBLAS_NAME(cublasGemmEx)));
  api.status_string = reinterpret_cast<decltype(api.status_string)>(resolve(DN_CUBLAS_NAME(cublasGetStatusString)));
#endif
  g_loaded.store(true);
  return api;
}

}  // namespace

const CublasApi& cublas() {
  static const CublasApi api = load();
  return api;
}

bool cublas_loaded() { return g_loaded.load(); }

}  // namespace dropnet
