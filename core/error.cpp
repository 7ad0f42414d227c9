#include "core/error.h"

namespace dropnet {

void internal_error(const char* file, int line, const std::string& msg) {
  throw Error(ErrorKind::Internal, fmt::format("{}:{}: {}", file, line, msg));
}

}  // namespace dropnet
