// Shared by the CLIs: argument parsing helpers, the top-level error handler (exit 2 on bad
// input, 1 on internal errors) and logging setup.
#pragma once

#include <functional>
#include <string>

namespace dropnet::cli {

// Runs `body`, catching dropnet::Error and std::exception: prints "<tool>: error: <message>"
// and returns 2 for input errors, 1 otherwise.
int run_main(const char* tool, const std::function<int()>& body);

void init_logging(int rank = 0);

}  // namespace dropnet::cli
