// Snapshots: weights as .safetensors (readable by PyTorch / NumPy) and the solver state beside
// them (iteration, momentum, data cursors, loss window, config fingerprint), each written to a
// temporary file in the same directory, fsync'd and renamed, with checksums; a `latest` pointer.
#pragma once

#include <string>

#include "optim/solver.h"

namespace dropnet {

// Writes <dir>/<prefix>_iter_<N>.safetensors and <dir>/<prefix>_iter_<N>.solverstate, then
// updates <dir>/latest; removes older snapshots beyond keep_last (0 = keep all). Returns the
// weights path. Data parallel (the solver has a reducer of world > 1): a collective that every
// rank calls at the same iteration; it gathers every rank's data-source positions (shards of
// unequal size are at different positions after an epoch end), rank 0 alone writes and returns
// the path, the others return "".
std::string save_snapshot(Solver& solver, const std::string& dir, const std::string& prefix, int64_t keep_last);
// Restores weights + solver state from a .solverstate file, a .safetensors file with its
// .solverstate beside it, or a directory (its `latest`). Bit-exact continuation. Every rank
// restores its own data-source positions when the snapshot was written by as many ranks; with
// another world size, every rank takes rank 0's (the shards differ anyway).
void restore_snapshot(Solver& solver, const std::string& path);
// Initializes parameters by layer name from a .safetensors file (shape-checked).
void load_weights(Net& net, const std::string& path);

}  // namespace dropnet
