// libFuzzer harness for the image-list reader: the first byte picks the mode (even: the rest is
// an image file -- JPEG, PNG or garbage -- named by a one-line list; odd: the rest is the list
// file itself), then the data set is built and sample 0 decoded and resized. dropnet::Error is
// the expected outcome of bad input; anything else (another exception, a sanitizer report, a
// crash) is a finding. Built and run by tools/run_fuzzers.sh.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/image_list.h"

namespace {
std::string scratch_dir() {
  static const std::string dir = [] {
    // A fixed-length name (the pid zero-padded): the paths in error messages, and so the code paths
    // behind them (short-string or heap), do not depend on the pid, which keeps a fixed-seed run
    // deterministic.
    char pid[16];
    std::snprintf(pid, sizeof pid, "%010d", static_cast<int>(getpid()));
    std::string d = std::string("/tmp/dropnet_fuzz_") + pid;
    std::string cmd = "mkdir -p " + d;
    if (std::system(cmd.c_str()) != 0) std::abort();
    return d;
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string dir = scratch_dir();
  const bool list_mode = data[0] & 1;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  {
    std::ofstream list(dir + "/list.txt", std::ios::binary | std::ios::trunc);
    if (list_mode) list << body;
    else list << "img.bin 3\n";
  }
  if (!list_mode) std::ofstream(dir + "/img.bin", std::ios::binary | std::ios::trunc) << body;
  try {
    dropnet::data::ImageListOptions o;
    o.list = dir + "/list.txt";
    o.resize_h = o.resize_w = 8;
    o.max_pixels = int64_t{1} << 22;
    o.channels = (data[0] & 2) ? 1 : 3;
    dropnet::data::ImageListDataset ds(o);
    std::vector<uint8_t> scratch;
    if (ds.size() > 0) ds.get(0, scratch);
  } catch (const dropnet::Error&) {
  }
  return 0;
}
