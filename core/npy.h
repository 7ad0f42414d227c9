// NumPy .npy files of float32 (little-endian '<f4', C order), for dumping activations and
// reference data (numpy.load / numpy.save compatible). Up to 4 dimensions (Shape's limit).
#pragma once

#include <string>

#include "core/tensor.h"

namespace dropnet {

// Writes atomically (core/fileio.h). Any device: a CUDA tensor is copied to the host first.
void write_npy(const std::string& path, const Tensor& t);
void write_npy(const std::string& path, const Shape& shape, const float* data);
// Reads a host tensor. Versions 1.0, 2.0 and 3.0 are read; another dtype, Fortran order, more
// than 4 dimensions, or a data size that does not match the shape are input errors naming the
// file and the problem.
Tensor read_npy(const std::string& path);
// The same from bytes already in memory (`origin` names them in errors).
Tensor parse_npy(const std::string& bytes, const std::string& origin);

}  // namespace dropnet
