// TRAIN or TEST: which net a layer, a data source or a run belongs to.
#pragma once

namespace dropnet {

enum class Phase { Train, Test };

inline const char* phase_name(Phase p) { return p == Phase::Train ? "TRAIN" : "TEST"; }

}  // namespace dropnet
