// libFuzzer harness for the gzip / IDX reader: the first byte picks images or labels, the rest is
// the file (plain or gzip; gzip bombs must stop at the header's promise). dropnet::Error is the
// expected outcome of bad input; anything else is a finding. Built and run by tools/run_fuzzers.sh.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/error.h"
#include "data/idx.h"

namespace {
std::string scratch_file() {
  static const std::string path = [] {
    std::string d = "/tmp/dropnet_fuzz_idx_" + std::to_string(getpid());
    std::string cmd = "mkdir -p " + d;
    if (std::system(cmd.c_str()) != 0) std::abort();
    return d + "/file.idx";
  }();
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string path = scratch_file();
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  try {
    if (data[0] & 1) {
      dropnet::data::read_idx_labels(path);
    } else {
      dropnet::data::IdxImages im = dropnet::data::read_idx_images(path);
      if (static_cast<int64_t>(im.pixels.size()) != im.n * im.rows * im.cols) std::abort();
    }
  } catch (const dropnet::Error&) {
  }
  return 0;
}
