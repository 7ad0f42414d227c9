// dropnet-pack --list LIST [--root DIR] --out FILE [options]   (--help: every option)
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

int pack_main(int argc, char** argv) {
  cli::Parser args("dropnet-pack",
                   "dropnet-pack --list LIST [--root DIR] --out FILE [--size 256 | --height H --width W] [options]",
                   "Decodes and resizes an image list (Caffe `path label` lines, or one folder per class with --root "
                   "alone) once into a packed uint8 file that the `packed` data source memory-maps: repeated "
                   "epochs decode no JPEG. Written atomically.");
  data::ImageListOptions o;
  std::string out;
  int64_t size = 256, height = 0, width = 0, channels = 3;
  bool rgb = false;
  args.option("--list", o.list, "LIST", "the image list: `path label` per line (paths relative to --root)");
  args.option("--root", o.root, "DIR", "the images' folder; alone: one sub-folder per class, in sorted order");
  args.option("--out", out, "FILE", "the packed file to write (required)");
  args.option("--size", size, "S", "resize every image to S x S");
  args.option("--height", height, "H", "resize to height H (default: --size)");
  args.option("--width", width, "W", "resize to width W (default: --size)");
  args.option("--channels", channels, "1|3", "gray or color");
  args.flag("--rgb", rgb, "store RGB (default: BGR, as Caffe)");
  args.flag("--skip-bad", o.skip_bad, "skip an image that does not decode (default: it is an error)");
  std::vector<std::string> pos = args.parse(argc, argv);
  if (!pos.empty()) input_error("unexpected argument '{}'\n{}", clip_text(pos[0]), args.usage());
  if (out.empty() || (o.list.empty() && o.root.empty()))
    input_error("{} missing\n{}", out.empty() ? "--out" : "--list or --root", args.usage());
  if (size <= 0 || size > 4096 || height < 0 || height > 4096 || width < 0 || width > 4096 || channels < 0 ||
      channels > 3)
    input_error("--size/--height/--width must be in [1, 4096], --channels 1 or 3");
  o.resize_h = static_cast<int>(height > 0 ? height : size);
  o.resize_w = static_cast<int>(width > 0 ? width : size);
  o.channels = static_cast<int>(channels);
  o.bgr = !rgb;
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
