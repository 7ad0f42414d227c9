// dropnet-pack --list LIST [--root DIR] --out FILE [--size 256 | --height H --width W]
//              [--channels 3] [--rgb] [--skip-bad]
// Decodes and resizes an image list (Caffe `path label` lines, or one folder per class with
// --root alone) once into a packed uint8 file that the `packed` data source memory-maps: the
// fast path for repeated epochs (no JPEG decoding per epoch). Written atomically.
#include <chrono>
#include <cstdio>

#include "core/error.h"
#include "data/image_list.h"
#include "data/packed.h"
#include "tools/cli_common.h"

using namespace dropnet;

namespace {

const char* kUsage =
    "usage: dropnet-pack --list LIST [--root DIR] --out FILE [--size 256 | --height H --width W]\n"
    "                    [--channels 3|1] [--rgb] [--skip-bad]";

int pack_main(int argc, char** argv) {
  cli::Args args(argc, argv);
  data::ImageListOptions o;
  o.list = args.take("list");
  o.root = args.take("root");
  const std::string out = args.take("out");
  const int64_t size = args.take_int("size", 256);
  o.resize_h = static_cast<int>(args.take_int("height", size));
  o.resize_w = static_cast<int>(args.take_int("width", size));
  o.channels = static_cast<int>(args.take_int("channels", 3));
  o.bgr = !args.take_flag("rgb");
  o.skip_bad = args.take_flag("skip-bad");
  args.positional(kUsage);
  if (out.empty() || (o.list.empty() && o.root.empty())) input_error("{}", kUsage);
  if (o.resize_h <= 0 || o.resize_w <= 0 || o.resize_h > 4096 || o.resize_w > 4096)
    input_error("--height/--width must be in [1, 4096]");
  if (o.channels != 1 && o.channels != 3) input_error("--channels must be 1 or 3");
  cli::init_logging(0);
  auto t0 = std::chrono::steady_clock::now();
  data::ImageListDataset ds(o);
  data::write_packed(out, ds);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("packed %lld images (%d x %d x %d, %d classes, %lld skipped) into %s in %.1f s (%.0f img/s)\n",
              static_cast<long long>(ds.size()), o.channels, o.resize_h, o.resize_w, ds.num_classes(),
              static_cast<long long>(ds.skipped()), out.c_str(), s, static_cast<double>(ds.size()) / s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cli::tune_openmp_waiting(argv);
  return cli::run_main("dropnet-pack", [&] { return pack_main(argc, argv); });
}
