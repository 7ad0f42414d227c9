// Resize kernels on the CPU: hand-computed cases per method and channel mode, the identity, the
// exact adjoint (<R x, y> == <x, R^T y> and element-wise against the dense transpose), beta, and
// conformance with PyTorch (F.interpolate / F.adaptive_avg_pool2d, forward and autograd backward)
// when /usr/bin/python3 can import torch.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/resize.h"
#include "kernels/resize_math.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

using testing::all_close;
using testing::random_vector;

const char* method_name(ResizeMethod m) {
  switch (m) {
    case ResizeMethod::Nearest: return "nearest";
    case ResizeMethod::Bilinear: return "bilinear";
    case ResizeMethod::Area: return "area";
  }
  return "?";
}
const char* mode_name(ChannelMode m) {
  switch (m) {
    case ChannelMode::Tile: return "tile";
    case ChannelMode::Pad: return "pad";
    case ChannelMode::Average: return "average";
  }
  return "?";
}

constexpr ResizeMethod kMethods[] = {ResizeMethod::Nearest, ResizeMethod::Bilinear, ResizeMethod::Area};
constexpr ChannelMode kModes[] = {ChannelMode::Tile, ChannelMode::Pad, ChannelMode::Average};

ResizeParams make(ResizeMethod m, ChannelMode cm, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc,
                  int64_t oh, int64_t ow) {
  ResizeParams p;
  p.method = m;
  p.channel_mode = cm;
  p.n = n;
  p.c = c;
  p.h = h;
  p.w = w;
  p.out_c = oc;
  p.out_h = oh;
  p.out_w = ow;
  return p;
}

int64_t in_count(const ResizeParams& p) { return p.n * p.c * p.h * p.w; }
int64_t out_count(const ResizeParams& p) { return p.n * p.out_c * p.out_h * p.out_w; }

std::vector<float> forward(const ResizeParams& p, const std::vector<float>& x) {
  std::vector<float> y(out_count(p), std::numeric_limits<float>::quiet_NaN());
  resize_forward_cpu(p, x.data(), y.data());
  return y;
}
std::vector<float> backward(const ResizeParams& p, const std::vector<float>& dy) {
  std::vector<float> dx(in_count(p), std::numeric_limits<float>::quiet_NaN());  // beta 0: not read
  resize_backward_cpu(p, dy.data(), 0.f, dx.data());
  return dx;
}

std::string case_name(const ResizeParams& p) {
  std::ostringstream s;
  s << method_name(p.method) << "_" << mode_name(p.channel_mode) << "_" << p.n << "x" << p.c << "x" << p.h << "x"
    << p.w << "_to_" << p.out_c << "x" << p.out_h << "x" << p.out_w;
  return s.str();
}

// ---- hand-computed cases ------------------------------------------------------------------

TEST(ResizeHand, Nearest1D) {
  // w 3 -> 5: scale 0.6, sources floor(0, 0.6, 1.2, 1.8, 2.4) = 0 0 1 1 2.
  EXPECT_EQ(forward(make(ResizeMethod::Nearest, ChannelMode::Tile, 1, 1, 1, 3, 1, 1, 5), {1, 2, 3}),
            (std::vector<float>{1, 1, 2, 2, 3}));
  // w 5 -> 3: scale 5/3, sources floor(0, 1.67, 3.33) = 0 1 3.
  EXPECT_EQ(forward(make(ResizeMethod::Nearest, ChannelMode::Tile, 1, 1, 1, 5, 1, 1, 3), {1, 2, 3, 4, 5}),
            (std::vector<float>{1, 2, 4}));
  // PyTorch evaluates floor(dst * (in / out)) in float: for 116 -> 108, dst 27 reads 28, not the
  // integer floor(27 * 116 / 108) = 29 (checked against torch 1.13 when this was written).
  EXPECT_EQ(resize_nearest_src(27, 116, 108), 28);
  EXPECT_EQ(resize_nearest_src(26, 116, 108), 27);
}

TEST(ResizeHand, Nearest2DAndAdjoint) {
  // (2, 2) -> (3, 4): rows 0 0 1 (scale 2/3), columns 0 0 1 1 (scale 0.5).
  const ResizeParams p = make(ResizeMethod::Nearest, ChannelMode::Tile, 1, 1, 2, 2, 1, 3, 4);
  EXPECT_EQ(forward(p, {1, 2, 3, 4}), (std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4}));
  // The adjoint sums the outputs that copied each input: 1+2+10+20, 3+4+30+40, 100+200, 300+400.
  EXPECT_EQ(backward(p, {1, 2, 3, 4, 10, 20, 30, 40, 100, 200, 300, 400}),
            (std::vector<float>{33, 77, 300, 700}));
}

TEST(ResizeHand, Bilinear) {
  // w 2 -> 4, half-pixel centres: src = max(0.5 (d + 0.5) - 0.5, 0) = 0, 0.25, 0.75, 1.25 -> x1.
  EXPECT_EQ(forward(make(ResizeMethod::Bilinear, ChannelMode::Tile, 1, 1, 1, 2, 1, 1, 4), {0, 4}),
            (std::vector<float>{0, 1, 3, 4}));
  // (2, 2) -> (4, 4): y[i][j] = 8 f(i) + g(j), f = 0 .25 .75 1, g = 0 1 3 4.
  EXPECT_EQ(forward(make(ResizeMethod::Bilinear, ChannelMode::Tile, 1, 1, 2, 2, 1, 4, 4), {0, 4, 8, 12}),
            (std::vector<float>{0, 1, 3, 4, 2, 3, 5, 6, 6, 7, 9, 10, 8, 9, 11, 12}));
  // w 4 -> 2: src = 2 (d + 0.5) - 0.5 = 0.5, 2.5.
  EXPECT_EQ(forward(make(ResizeMethod::Bilinear, ChannelMode::Tile, 1, 1, 1, 4, 1, 1, 2), {0, 1, 2, 3}),
            (std::vector<float>{0.5f, 2.5f}));
  // Adjoint of w 2 -> 4 with dy = e_1 + 10 e_3: input 0 gets 0.75, input 1 gets 0.25 + 10.
  EXPECT_EQ(backward(make(ResizeMethod::Bilinear, ChannelMode::Tile, 1, 1, 1, 2, 1, 1, 4), {0, 1, 0, 10}),
            (std::vector<float>{0.75f, 10.25f}));
}

TEST(ResizeHand, Area) {
  // w 5 -> 3: windows [0, 2), [1, 4), [3, 5).
  EXPECT_EQ(forward(make(ResizeMethod::Area, ChannelMode::Tile, 1, 1, 1, 5, 1, 1, 3), {1, 2, 3, 4, 5}),
            (std::vector<float>{1.5f, 3.f, 4.5f}));
  // w 2 -> 3: windows [0, 1), [0, 2), [1, 2).
  EXPECT_EQ(forward(make(ResizeMethod::Area, ChannelMode::Tile, 1, 1, 1, 2, 1, 1, 3), {2, 6}),
            (std::vector<float>{2, 4, 6}));
  // (4, 4) -> (2, 2): 2 x 2 means.
  std::vector<float> x(16);
  for (int i = 0; i < 16; ++i) x[i] = static_cast<float>(i);
  EXPECT_EQ(forward(make(ResizeMethod::Area, ChannelMode::Tile, 1, 1, 4, 4, 1, 2, 2), x),
            (std::vector<float>{2.5f, 4.5f, 10.5f, 12.5f}));
  // Adjoint of w 5 -> 3 with dy = (6, 3, 2): 6/2, 6/2 + 3/3, 3/3, 3/3 + 2/2, 2/2.
  EXPECT_EQ(backward(make(ResizeMethod::Area, ChannelMode::Tile, 1, 1, 1, 5, 1, 1, 3), {6, 3, 2}),
            (std::vector<float>{3, 4, 1, 2, 1}));
}

TEST(ResizeHand, Channels) {
  // 1x1 planes; channel c holds 10^c-ish distinct values.
  const std::vector<float> x3 = {1, 20, 300}, x5 = {1, 2, 4, 8, 16};
  auto grow = [&](ChannelMode m) { return forward(make(ResizeMethod::Nearest, m, 1, 3, 1, 1, 5, 1, 1), x3); };
  auto shrink = [&](ChannelMode m) { return forward(make(ResizeMethod::Nearest, m, 1, 5, 1, 1, 2, 1, 1), x5); };
  EXPECT_EQ(grow(ChannelMode::Tile), (std::vector<float>{1, 20, 300, 1, 20}));
  EXPECT_EQ(grow(ChannelMode::Pad), (std::vector<float>{1, 20, 300, 0, 0}));
  EXPECT_EQ(grow(ChannelMode::Average), (std::vector<float>{1, 20, 300, 1, 20}));  // average grows as tile
  EXPECT_EQ(shrink(ChannelMode::Tile), (std::vector<float>{1, 2}));
  EXPECT_EQ(shrink(ChannelMode::Pad), (std::vector<float>{1, 2}));
  EXPECT_EQ(shrink(ChannelMode::Average), (std::vector<float>{(1 + 4 + 16) / 3.f, (2 + 8) / 2.f}));
  // Adjoints: tile 3 -> 5 sums the copies; average 5 -> 2 spreads 1/count.
  EXPECT_EQ(backward(make(ResizeMethod::Nearest, ChannelMode::Tile, 1, 3, 1, 1, 5, 1, 1), {1, 2, 3, 4, 5}),
            (std::vector<float>{5, 7, 3}));
  EXPECT_EQ(backward(make(ResizeMethod::Nearest, ChannelMode::Pad, 1, 3, 1, 1, 5, 1, 1), {1, 2, 3, 4, 5}),
            (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(backward(make(ResizeMethod::Nearest, ChannelMode::Average, 1, 5, 1, 1, 2, 1, 1), {3, 4}),
            (std::vector<float>{1, 2, 1, 2, 1}));
}

// ---- properties over every method x channel mode ------------------------------------------

struct Sizes {
  int64_t n, c, h, w, oc, oh, ow;
};
// Odd sizes; up, down, mixed and identity spatially and along channels.
const Sizes kSizes[] = {
    {2, 3, 5, 7, 5, 9, 4},    {2, 5, 7, 9, 2, 3, 4},    {1, 3, 3, 5, 7, 11, 13}, {2, 4, 8, 8, 4, 16, 16},
    {1, 6, 13, 11, 4, 13, 11}, {1, 4, 17, 6, 3, 5, 6},   {1, 3, 1, 1, 3, 3, 2},   {1, 2, 9, 4, 6, 1, 1},
};

TEST(ResizeProperty, IdentityWhenSizesMatch) {
  for (ResizeMethod m : kMethods)
    for (ChannelMode cm : kModes) {
      const ResizeParams p = make(m, cm, 2, 3, 5, 7, 3, 5, 7);
      const std::vector<float> x = random_vector(in_count(p), 1);
      EXPECT_EQ(forward(p, x), x) << case_name(p);
      EXPECT_EQ(backward(p, x), x) << case_name(p);
    }
}

TEST(ResizeProperty, AdjointInnerProduct) {
  for (const Sizes& s : kSizes)
    for (ResizeMethod m : kMethods)
      for (ChannelMode cm : kModes) {
        const ResizeParams p = make(m, cm, s.n, s.c, s.h, s.w, s.oc, s.oh, s.ow);
        const std::vector<float> x = random_vector(in_count(p), 2), y = random_vector(out_count(p), 3);
        const std::vector<float> rx = forward(p, x), rty = backward(p, y);
        double a = 0, b = 0, scale = 0;
        for (size_t i = 0; i < rx.size(); ++i) {
          a += static_cast<double>(rx[i]) * y[i];
          scale += std::fabs(static_cast<double>(rx[i]) * y[i]);
        }
        for (size_t j = 0; j < x.size(); ++j) {
          b += static_cast<double>(x[j]) * rty[j];
          scale += std::fabs(static_cast<double>(x[j]) * rty[j]);
        }
        EXPECT_LE(std::fabs(a - b), 1e-5 * scale) << case_name(p) << ": <Rx, y> " << a << " <x, R^T y> " << b;
      }
}

// Element-wise: R^T dy against the transpose of the dense matrix built column by column from the
// forward pass (R e_j).
TEST(ResizeProperty, BackwardIsDenseTranspose) {
  for (const Sizes& s : kSizes)
    for (ResizeMethod m : kMethods)
      for (ChannelMode cm : kModes) {
        const ResizeParams p = make(m, cm, 1, s.c, s.h, s.w, s.oc, s.oh, s.ow);
        const int64_t ni = in_count(p), no = out_count(p);
        const std::vector<float> dy = random_vector(no, 4);
        std::vector<float> ref(ni), e(ni, 0.f);
        for (int64_t j = 0; j < ni; ++j) {
          e[j] = 1.f;
          const std::vector<float> col = forward(p, e);
          e[j] = 0.f;
          double acc = 0;
          for (int64_t i = 0; i < no; ++i) acc += static_cast<double>(col[i]) * dy[i];
          ref[j] = static_cast<float>(acc);
        }
        EXPECT_TRUE(all_close(ref, backward(p, dy), 1e-5f, 1e-5f)) << case_name(p);
      }
}

// The CUDA kernels evaluate the same element functions with taps and ranges computed on the fly
// (ResizeAxisComputed) instead of the CPU's tables: run that path here, bit for bit.
TEST(ResizeProperty, OnTheFlyTapsMatchCpuTables) {
  for (const Sizes& s : kSizes)
    for (ResizeMethod m : kMethods)
      for (ChannelMode cm : kModes) {
        const ResizeParams p = make(m, cm, s.n, s.c, s.h, s.w, s.oc, s.oh, s.ow);
        const std::vector<float> x = random_vector(in_count(p), 9), dy = random_vector(out_count(p), 10);
        const ResizeAxisComputed ay{m, p.h, p.out_h}, ax{m, p.w, p.out_w};
        std::vector<float> y(out_count(p)), dx(in_count(p));
        for (int64_t n = 0, i = 0; n < p.n; ++n)
          for (int64_t c = 0; c < p.out_c; ++c)
            for (int64_t oy = 0; oy < p.out_h; ++oy)
              for (int64_t ox = 0; ox < p.out_w; ++ox, ++i) y[i] = resize_forward_at(p, x.data(), n, c, ay.tap(oy), ax.tap(ox));
        for (int64_t n = 0, i = 0; n < p.n; ++n)
          for (int64_t c = 0; c < p.c; ++c)
            for (int64_t iy = 0; iy < p.h; ++iy)
              for (int64_t ix = 0; ix < p.w; ++ix, ++i)
                dx[i] = resize_backward_at(p, dy.data(), n, c, iy, ix, ay.range(iy), ax.range(ix), ay, ax);
        EXPECT_TRUE(all_close(forward(p, x), y, 0.f, 0.f)) << case_name(p);
        EXPECT_TRUE(all_close(backward(p, dy), dx, 0.f, 0.f)) << case_name(p);
      }
}

// The inverse ranges against brute force: for every input index, exactly the outputs whose taps
// read it (nearest, area) or a superset of them with the others reading it with weight 0 (bilinear).
TEST(ResizeAxis, RangesInvertTaps) {
  for (ResizeMethod m : kMethods)
    for (int64_t in = 1; in <= 40; ++in)
      for (int64_t out = 1; out <= 40; ++out)
        for (int64_t i = 0; i < in; ++i) {
          const ResizeAxisRange r = resize_axis_range(m, i, in, out);
          ASSERT_LE(0, r.lo);
          ASSERT_LE(r.lo, r.hi);
          ASSERT_LE(r.hi, out);
          for (int64_t o = 0; o < out; ++o) {
            const ResizeAxisTap t = resize_axis_tap(m, o, in, out);
            bool reads = false;
            if (m == ResizeMethod::Nearest) reads = t.i0 == i;
            if (m == ResizeMethod::Bilinear) reads = resize_linear_weight(t, i) != 0.f;
            if (m == ResizeMethod::Area) reads = t.i0 <= i && i < t.i1;
            const bool in_range = r.lo <= o && o < r.hi;
            if (m == ResizeMethod::Bilinear) {
              ASSERT_TRUE(!reads || in_range) << method_name(m) << " " << in << " -> " << out << " i " << i << " o " << o;
            } else {
              ASSERT_EQ(reads, in_range) << method_name(m) << " " << in << " -> " << out << " i " << i << " o " << o;
            }
          }
        }
  // Also on large sizes where the float index arithmetic matters (PyTorch's nearest formula).
  for (auto [in, out] : {std::pair<int64_t, int64_t>{116, 108}, {1000, 999}, {999, 1000}, {4097, 3}, {3, 4097}})
    for (int64_t i = 0; i < in; ++i) {
      const ResizeAxisRange r = resize_axis_range(ResizeMethod::Nearest, i, in, out);
      for (int64_t o = r.lo; o < r.hi; ++o) ASSERT_EQ(resize_nearest_src(o, in, out), i);
      if (r.lo > 0) {
        ASSERT_LT(resize_nearest_src(r.lo - 1, in, out), i);
      }
      if (r.hi < out) {
        ASSERT_GT(resize_nearest_src(r.hi, in, out), i);
      }
    }
}

TEST(ResizeProperty, BackwardBetaAccumulates) {
  for (ResizeMethod m : kMethods) {
    const ResizeParams p = make(m, ChannelMode::Average, 2, 5, 7, 9, 2, 3, 4);
    const std::vector<float> dy = random_vector(out_count(p), 5), dx0 = random_vector(in_count(p), 6);
    const std::vector<float> g = backward(p, dy);
    std::vector<float> dx = dx0, ref(dx0.size());
    resize_backward_cpu(p, dy.data(), 1.f, dx.data());
    for (size_t i = 0; i < ref.size(); ++i) ref[i] = dx0[i] + g[i];
    EXPECT_TRUE(all_close(ref, dx, 0.f, 0.f)) << method_name(m);
    dx = dx0;
    resize_backward_cpu(p, dy.data(), 0.5f, dx.data());
    for (size_t i = 0; i < ref.size(); ++i) ref[i] = 0.5f * dx0[i] + g[i];
    EXPECT_TRUE(all_close(ref, dx, 1e-6f, 1e-6f)) << method_name(m);
  }
}

TEST(ResizeProperty, RejectsBadExtents) {
  std::vector<float> x(8), y(8);
  EXPECT_THROW(resize_forward_cpu(make(ResizeMethod::Nearest, ChannelMode::Tile, 1, 0, 2, 2, 1, 2, 2), x.data(),
                                  y.data()),
               Error);
  EXPECT_THROW(resize_backward_cpu(make(ResizeMethod::Area, ChannelMode::Pad, 1, 1, 2, 2, 1, 0, 2), x.data(), 0.f,
                                   y.data()),
               Error);
}

// ---- PyTorch conformance ------------------------------------------------------------------

// Minimal .npy (version 1.0, little-endian float32, C order) writer and reader.
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<float>& data) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const unsigned char len_le[2] = {static_cast<unsigned char>(len & 0xff), static_cast<unsigned char>(len >> 8)};
  f.write(reinterpret_cast<const char*>(len_le), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
  DN_CHECK(f.good(), "writing {}", path);
}

std::vector<float> read_npy(const std::string& path, std::vector<int64_t>* shape) {
  std::ifstream f(path, std::ios::binary);
  DN_CHECK(f.good(), "cannot open {}", path);
  char magic[8];
  f.read(magic, 8);
  DN_CHECK(f.good() && std::memcmp(magic, "\x93NUMPY", 6) == 0, "{}: not an .npy file", path);
  uint32_t len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  std::string header(len, ' ');
  f.read(header.data(), len);
  DN_CHECK(header.find("'descr': '<f4'") != std::string::npos, "{}: not little-endian float32: {}", path, header);
  DN_CHECK(header.find("'fortran_order': False") != std::string::npos, "{}: Fortran order", path);
  const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  shape->clear();
  int64_t count = 1;
  for (std::string tok; std::getline(dims, tok, ',');) {
    if (tok.find_first_not_of(' ') == std::string::npos) continue;
    shape->push_back(std::stoll(tok));
    count *= shape->back();
  }
  std::vector<float> data(static_cast<size_t>(count));
  f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count * sizeof(float)));
  DN_CHECK(f.good(), "{}: truncated", path);
  return data;
}

std::string source_dir() {
  const char* env = std::getenv("DROPNET_SOURCE_DIR");
  return env && *env ? env : DROPNET_SOURCE_DIR;
}

TEST(ResizeTorch, MatchesPyTorch) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 cannot import torch: PyTorch conformance not checked";
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("dropnet_resize_torch_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  struct Case {
    ResizeParams p;
    std::string name;
    std::vector<float> x, dy;
  };
  std::vector<Case> cases;
  std::ofstream list(dir / "cases.txt");
  // A size pair where PyTorch's float nearest index differs from the integer formula.
  std::vector<Sizes> sizes(std::begin(kSizes), std::end(kSizes));
  sizes.push_back({1, 2, 116, 10, 2, 108, 20});
  for (const Sizes& s : sizes)
    for (ResizeMethod m : kMethods)
      for (ChannelMode cm : kModes) {
        Case c{make(m, cm, s.n, s.c, s.h, s.w, s.oc, s.oh, s.ow), "", {}, {}};
        c.name = case_name(c.p);
        c.x = random_vector(in_count(c.p), 7);
        c.dy = random_vector(out_count(c.p), 8);
        write_npy((dir / (c.name + "_x.npy")).string(), {s.n, s.c, s.h, s.w}, c.x);
        write_npy((dir / (c.name + "_dy.npy")).string(), {s.n, s.oc, s.oh, s.ow}, c.dy);
        list << c.name << " " << method_name(m) << " " << mode_name(cm) << " " << s.oc << " " << s.oh << " "
             << s.ow << "\n";
        cases.push_back(std::move(c));
      }
  list.close();
  const std::string cmd = "/usr/bin/python3 " + source_dir() + "/tests/torch_resize.py " + dir.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const Case& c : cases) {
    std::vector<int64_t> shape;
    const std::vector<float> y_ref = read_npy((dir / (c.name + "_y.npy")).string(), &shape);
    EXPECT_EQ(shape, (std::vector<int64_t>{c.p.n, c.p.out_c, c.p.out_h, c.p.out_w})) << c.name;
    const std::vector<float> dx_ref = read_npy((dir / (c.name + "_dx.npy")).string(), &shape);
    // Nearest without averaging copies values: it must match bit for bit.
    const bool copies = c.p.method == ResizeMethod::Nearest && !resize_channel_averages(c.p);
    const float tol = copies ? 0.f : 2e-6f;
    EXPECT_TRUE(all_close(y_ref, forward(c.p, c.x), tol, tol)) << c.name << " forward";
    EXPECT_TRUE(all_close(dx_ref, backward(c.p, c.dy), 1e-5f, 1e-5f)) << c.name << " backward";
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dropnet
