// Snapshots: weights as .safetensors (readable by PyTorch / NumPy) and the solver state beside
// them (iteration, momentum, data cursors, loss window, config fingerprint), each written to a
// temporary file in the same directory, fsync'd and renamed, with checksums; a `latest` pointer.
#pragma once

#include <string>

#include "optim/solver.h"

namespace dropnet {

// Writes <dir>/<prefix>_iter_<N>.safetensors and <dir>/<prefix>_iter_<N>.solverstate, then
// updates <dir>/latest; removes older snapshots beyond keep_last (0 = keep all). Returns the
// weights path.
std::string save_snapshot(Solver& solver, const std::string& dir, const std::string& prefix, int64_t keep_last);
// Restores weights + solver state from a .solverstate file, a .safetensors file with its
// .solverstate beside it, or a directory (its `latest`). Bit-exact continuation.
void restore_snapshot(Solver& solver, const std::string& path);
// Initializes parameters by layer name from a .safetensors file (shape-checked).
void load_weights(Net& net, const std::string& path);

}  // namespace dropnet
