#include "core/error.h"

#include <algorithm>

namespace dropnet {

std::string trim(std::string_view s, std::string_view chars) {
  const size_t a = s.find_first_not_of(chars);
  if (a == std::string_view::npos) return "";
  return std::string(s.substr(a, s.find_last_not_of(chars) - a + 1));
}

std::string closest_match(std::string_view given, const std::vector<std::string>& candidates, size_t max_edits) {
  std::string best;
  size_t best_d = max_edits + 1;
  std::vector<size_t> row;
  for (const std::string& c : candidates) {
    // Levenshtein distance, one row at a time.
    row.resize(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= given.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (given[i - 1] == c[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    if (row[c.size()] < best_d) best_d = row[c.size()], best = c;
  }
  return best;
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
