#include "tools/cli_common.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>

#include "core/error.h"

namespace dropnet::cli {

int run_main(const char* tool, const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return e.kind() == ErrorKind::Input ? 2 : 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of memory\n", tool);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return 1;
  }
}

void init_logging(int rank) {
  auto logger = spdlog::stderr_color_mt("dropnet");
  logger->set_pattern(rank == 0 ? "%H:%M:%S.%e %^%L%$ %v" : "%H:%M:%S.%e %^%L%$ [rank " + std::to_string(rank) + "] %v");
  spdlog::set_default_logger(logger);
}

}  // namespace dropnet::cli
