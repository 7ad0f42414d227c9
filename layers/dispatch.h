// Backend dispatch inside layers: the CUDA call is compiled only in CUDA builds; a CUDA device can
// only be selected in such a build (parse_device refuses otherwise), so there is no silent fallback.
#pragma once

#include "core/device.h"

#if DROPNET_HAVE_CUDA
#define DN_DISPATCH(dev, cpu_call, cuda_call) \
  do {                                        \
    if ((dev).is_cuda()) {                    \
      cuda_call;                              \
    } else {                                  \
      cpu_call;                               \
    }                                         \
  } while (0)
#else
#define DN_DISPATCH(dev, cpu_call, cuda_call) \
  do {                                        \
    cpu_call;                                 \
  } while (0)
#endif
