// Typed errors and always-on checks. Every check throws dropnet::Error; the CLIs catch it at
// the top and exit with code 2 for bad input (ErrorKind::Input), 3 for a training run that
// diverged (ErrorKind::Diverged: a non-finite loss or gradient) and 1 for internal failures.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dropnet {

enum class ErrorKind { Input, Internal, Diverged };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Bad user input: a config, a data file, a snapshot. Message names what and where.
template <typename... Args>
[[noreturn]] void input_error(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(ErrorKind::Input, fmt::format(f, std::forward<Args>(args)...));
}

// The training diverged (non-finite loss or gradient): not the input's fault as such, and not a
// bug; the CLIs exit with code 3.
template <typename... Args>
[[noreturn]] void diverged_error(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(ErrorKind::Diverged, fmt::format(f, std::forward<Args>(args)...));
}

// User text quoted in a message, cut to `max` bytes ("abc... (10485760 bytes)") so a hostile
// 10 MB name cannot make a 10 MB error line; control characters are shown as '?'.
std::string clip_text(std::string_view s, size_t max = 100);

// `s` without the leading and trailing characters in `chars` (whitespace by default).
std::string trim(std::string_view s, std::string_view chars = " \t\r\n");
// The candidate closest to `given` by edit distance, if it is at most `max_edits` away ("" if none):
// the "did you mean" of a mistyped option or config key.
std::string closest_match(std::string_view given, const std::vector<std::string>& candidates, size_t max_edits = 2);

[[noreturn]] void internal_error(const char* file, int line, const std::string& msg);

}  // namespace dropnet

// Internal invariant; always on (no debug-only checks).
#define DN_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond))                                                                         \
      ::dropnet::internal_error(__FILE__, __LINE__,                                      \
                                std::string("check failed: " #cond " ") + fmt::format(__VA_ARGS__)); \
  } while (0)
