#include "core/error.h"

namespace dropnet {

std::string trim(std::string_view s, std::string_view chars) {
  const size_t a = s.find_first_not_of(chars);
  if (a == std::string_view::npos) return "";
  return std::string(s.substr(a, s.find_last_not_of(chars) - a + 1));
}

std::string clip_text(std::string_view s, size_t max) {
  std::string out;
  const size_t n = s.size() <= max ? s.size() : max;
  out.reserve(n + 32);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (n < s.size()) out += fmt::format("... ({} bytes)", s.size());
  return out;
}

void internal_error(const char* file, int line, const std::string& msg) {
  throw Error(ErrorKind::Internal, fmt::format("{}:{}: {}", file, line, msg));
}

}  // namespace dropnet
