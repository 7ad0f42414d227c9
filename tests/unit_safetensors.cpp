// The safetensors reader/writer, the checksummed atomic file writer and the .npy reader/writer:
// round trips, a table of malformed headers (each with its message), checksum detection, and
// a cross-check of the files with NumPy (header parsed by hand, as the format is specified).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fileio.h"
#include "core/npy.h"
#include "core/safetensors.h"
#include "tests/testing/files.h"
#include "tests/testing/harness.h"

namespace dropnet {
namespace {

namespace fs = std::filesystem;

using testing::input_error_of;
using testing::TempDir;

// A file with a hand-written header (8-byte length + header + data).
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

TEST(Safetensors, RoundTripF32AndI64WithMetadata) {
  std::vector<float> a = testing::random_vector(2 * 3 * 4, 7);
  std::vector<float> b = {1.5f, -2.25f};
  std::vector<int64_t> c = {3, -1, int64_t{1} << 40};
  std::vector<StTensorOut> ts{{"conv1.weight", StDtype::F32, {2, 3, 4}, a.data()},
                              {"conv1.bias", StDtype::F32, {2}, b.data()},
                              {"cursor", StDtype::I64, {3}, c.data()},
                              {"empty", StDtype::F32, {0}, nullptr},
                              {"we\"ird\\name\n", StDtype::F32, {1, 1}, b.data()}};
  std::string bytes = encode_safetensors(ts, {{"format", "test"}, {"note", "quote \" and \\ and \x01"}});
  uint64_t hlen;
  std::memcpy(&hlen, bytes.data(), 8);
  EXPECT_EQ((8 + hlen) % 8, 0u) << "data section is 8-byte aligned";
  SafeTensors st = SafeTensors::parse(bytes, "mem");
  st.verify_checksums(true);
  ASSERT_EQ(st.tensors().size(), 5u);
  EXPECT_EQ(st.tensors()[0].name, "conv1.weight");  // file order is kept
  EXPECT_EQ(st.find("conv1.weight")->shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(st.floats(*st.find("conv1.weight")), a);
  EXPECT_EQ(st.floats(*st.find("conv1.bias")), b);
  EXPECT_EQ(st.int64s(*st.find("cursor")), c);
  EXPECT_EQ(st.find("empty")->count(), 0);
  EXPECT_EQ(st.floats(*st.find("we\"ird\\name\n")), std::vector<float>{b[0]});
  EXPECT_EQ(st.meta("format"), "test");
  EXPECT_EQ(st.meta("note"), "quote \" and \\ and \x01");
  EXPECT_EQ(st.find("nope"), nullptr);
  // Asking for the wrong dtype is an error that names the tensor.
  EXPECT_NE(input_error_of([&] { st.floats(*st.find("cursor")); }).find("'cursor' has dtype I64"), std::string::npos);
  EXPECT_NE(input_error_of([&] { st.int64s(*st.find("conv1.bias")); }).find("expected I64"), std::string::npos);
  EXPECT_NE(input_error_of([&] { st.meta("absent"); }).find("\"absent\" is missing"), std::string::npos);
}

TEST(Safetensors, ReadsForeignFilesWithoutChecksums) {
  // As written by the reference implementation: no dropnet metadata, whitespace, other order.
  float v[3] = {1.f, 2.f, 3.f};
  std::string data(reinterpret_cast<const char*>(v), 12);
  std::string f = raw_file(
      "{ \"b\" : {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]},\n"
      "  \"a\": {\"shape\": [2], \"dtype\": \"F32\", \"data_offsets\": [0, 8]}, \"__metadata__\": {\"x\": \"y\"}}   ",
      data);
  SafeTensors st = SafeTensors::parse(f, "foreign");
  st.verify_checksums(false);
  EXPECT_EQ(st.floats(*st.find("a")), (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(st.floats(*st.find("b")), (std::vector<float>{3.f}));
  EXPECT_NE(input_error_of([&] { st.verify_checksums(true); }).find("no \"crc32\""), std::string::npos);
}

struct BadCase {
  const char* name;
  std::string bytes;
  const char* message;  // a substring of the error
};

TEST(Safetensors, MalformedFilesEachGiveAMessage) {
  const std::string d8(8, '\0');
  const std::string ok_t = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
  std::string huge(8, '\0');
  const uint64_t big = uint64_t{1} << 40;
  std::memcpy(huge.data(), &big, 8);
  std::string past = raw_file("{" + ok_t + "}", d8);
  const uint64_t over = 1000;
  std::memcpy(past.data(), &over, 8);
  std::vector<BadCase> cases{
      {"empty file", "", "shorter than the 8-byte header length"},
      {"short file", "abc", "shorter than the 8-byte header length"},
      {"header length too large", huge + "{}", "bad header length"},
      {"header length past the end", past, "runs past the end"},
      {"not an object", raw_file("[1,2]", ""), "does not start with '{'"},
      {"bad JSON", raw_file("{\"t\":{\"dtype\":\"F32\",", d8), "not valid JSON"},
      {"trailing comma", raw_file("{" + ok_t + ",}", d8), "not valid JSON"},
      {"garbage after the object", raw_file("{" + ok_t + "}x", d8), "unexpected data after"},
      {"duplicate tensor", raw_file("{" + ok_t + "," + ok_t + "}", d8 + d8), "duplicate key"},
      {"dtype F16", raw_file("{\"t\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", d8), "dtype F16"},
      {"dtype F64", raw_file("{\"t\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", d8), "dtype F64"},
      {"missing offsets", raw_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", d8), "lacks dtype, shape or data_offsets"},
      {"unknown field", raw_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", d8),
       "unknown field 'x'"},
      {"negative dim", raw_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", d8),
       "non-negative integer"},
      {"fractional dim", raw_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", d8),
       "non-negative integer"},
      {"offsets outside the file", raw_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d8),
       "outside the 8-byte data section"},
      {"offsets reversed", raw_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", d8),
       "outside the"},
      {"size does not match shape", raw_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", d8),
       "needs 4 bytes but data_offsets span 8"},
      {"overlap", raw_file("{" + ok_t + ",\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", d8 + d8),
       "overlap or gap"},
      {"trailing data", raw_file("{" + ok_t + "}", d8 + "xxxx"), "truncated or extra bytes"},
      {"metadata not strings", raw_file("{\"__metadata__\":{\"a\":1}," + ok_t + "}", d8), "is not a string"},
      {"tensor not an object", raw_file("{\"t\":3}", ""), "is not an object"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string msg = input_error_of([&] { SafeTensors::parse(c.bytes, "case.safetensors"); });
    EXPECT_NE(msg.find(c.message), std::string::npos) << c.name << ": " << msg;
    EXPECT_NE(msg.find("case.safetensors"), std::string::npos) << "the message names the file: " << msg;
  }
}

TEST(Safetensors, EveryFlippedByteIsDetected) {
  std::vector<float> a = testing::random_vector(40, 3);
  std::string bytes = encode_safetensors({{"w", StDtype::F32, {4, 10}, a.data()}}, {{"format", "x"}});
  int detected = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit : {0, 5}) {
      std::string b = bytes;
      b[i] = static_cast<char>(b[i] ^ (1 << bit));
      try {
        SafeTensors st = SafeTensors::parse(b, "flip");
        st.verify_checksums(true);
        ADD_FAILURE() << "flip of bit " << bit << " at byte " << i << " went unnoticed";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Input);
        ++detected;
      }
    }
  }
  EXPECT_EQ(detected, static_cast<int>(2 * bytes.size()));
}

TEST(FileIo, AtomicWriteReplacesAndLeavesNoTemporaries) {
  TempDir dir;
  const std::string p = dir.file("x.bin");
  write_file_atomic(p, "first");
  write_file_atomic(p, "second version");
  EXPECT_EQ(read_file(p), "second version");
  for (const auto& e : fs::directory_iterator(dir.path())) EXPECT_FALSE(is_temp_file_name(e.path().filename().string()));
  EXPECT_NE(input_error_of([&] { write_file_atomic(dir.file("no/such/dir/x"), "a"); }).find("no/such/dir"),
            std::string::npos);
  EXPECT_NE(input_error_of([&] { read_file(dir.file("missing"), "weights file"); }).find("cannot open weights file"),
            std::string::npos);
  EXPECT_EQ(crc32_bytes("123456789", 9), 0xCBF43926u);  // the CRC-32 check value
  EXPECT_EQ(crc32_hex(0xCBF43926u), "cbf43926");
}

TEST(FileIo, StaleTemporariesOfDeadProcessesAreRemoved) {
  TempDir dir;
  // A pid that cannot exist (above pid_max) and our own pid (alive: kept).
  const std::string dead = dir.file(".tmp-999999999-0-a.safetensors");
  const std::string mine = dir.file(fmt::format(".tmp-{}-0-b.safetensors", ::getpid()));
  const std::string other = dir.file("keep.safetensors");
  // The current format carries the host tag: a dead pid of this host goes, of another host stays
  // (on a shared file system that pid is another machine's process).
  const std::string dead_here = dir.file(fmt::format(".tmp-999999999-h{}-0-c.safetensors", host_tag()));
  const std::string other_host = dir.file(".tmp-999999999-h0badf00d-0-d.safetensors");
  for (const auto& p : {dead, mine, other, dead_here, other_host}) std::ofstream(p) << "x";
  EXPECT_EQ(remove_stale_temp_files(dir.path().string()), 2);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_FALSE(fs::exists(dead_here));
  EXPECT_TRUE(fs::exists(mine));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(other_host));
  EXPECT_EQ(host_tag().size(), 8u);
}

TEST(Npy, RoundTripShapes) {
  TempDir dir;
  for (Shape s : {Shape{}, Shape{5}, Shape{2, 3}, Shape{2, 1, 3, 4}, Shape{0, 3}}) {
    SCOPED_TRACE(s.str());
    Tensor t(s);
    std::vector<float> v = testing::random_vector(s.count(), 11);
    if (s.count() > 0) t.from_host(v);
    write_npy(dir.file("a.npy"), t);
    Tensor r = read_npy(dir.file("a.npy"));
    EXPECT_EQ(r.shape(), s);
    if (s.count() > 0) {
      EXPECT_EQ(r.to_host(), v);
    }
    const auto size = fs::file_size(dir.file("a.npy"));
    EXPECT_EQ((size - static_cast<uintmax_t>(s.count()) * 4) % 64, 0u) << "header padded to 64 bytes";
  }
}

TEST(Npy, BadFilesGiveMessages) {
  auto npy = [](const std::string& dict, size_t data_bytes) {
    std::string h = dict;
    while ((10 + h.size() + 1) % 64 != 0) h += ' ';
    h += '\n';
    std::string out("\x93NUMPY\x01\x00", 8);
    const uint16_t n = static_cast<uint16_t>(h.size());
    out.append(reinterpret_cast<const char*>(&n), 2);
    return out + h + std::string(data_bytes, '\0');
  };
  std::vector<BadCase> cases{
      {"not npy", "hello world, not numpy", "bad magic"},
      {"float64", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16), "dtype '<f8'"},
      {"big endian", npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8), "dtype '>f4'"},
      {"int32", npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", 8), "dtype '<i4'"},
      {"fortran", npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16), "Fortran-order"},
      {"truncated data", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20), "truncated"},
      {"extra data", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12), "needs 8 data bytes"},
      {"5 dims", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 2), }", 8), "5 dimensions"},
      {"no shape", npy("{'descr': '<f4', 'fortran_order': False, }", 8), "no 'shape'"},
      {"bad shape", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }", 8), "malformed shape"},
      {"header past end", std::string("\x93NUMPY\x01\x00\xff\x00{}", 12), "runs past the end"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string msg = input_error_of([&] { parse_npy(c.bytes, "case.npy"); });
    EXPECT_NE(msg.find(c.message), std::string::npos) << c.name << ": " << msg;
    EXPECT_NE(msg.find("case.npy"), std::string::npos) << msg;
  }
}

bool have_numpy() { return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0; }

// NumPy reads both formats: the .npy through np.load, the safetensors file through a parse of
// the header by hand (8-byte length, JSON, offsets), which is all a reader needs.
TEST(Safetensors, NumpyReadsOurFiles) {
  if (!have_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  TempDir dir;
  std::vector<float> w = testing::random_vector(6 * 2 * 3 * 3, 5);
  std::vector<float> bias = testing::random_vector(6, 6);
  write_safetensors(dir.file("m.safetensors"),
                    {{"conv1.weight", StDtype::F32, {6, 2, 3, 3}, w.data()}, {"conv1.bias", StDtype::F32, {6}, bias.data()}},
                    {{"format", "dropnet-weights-v1"}});
  Tensor t(Shape{6, 2, 3, 3});
  t.from_host(w);
  write_npy(dir.file("w.npy"), t);
  const std::string script = dir.file("check.py");
  std::ofstream(script) << R"(import json, struct, sys, zlib
import numpy as np
d = sys.argv[1]
raw = open(d + '/m.safetensors', 'rb').read()
n, = struct.unpack('<Q', raw[:8])
hdr = json.loads(raw[8:8 + n])
data = raw[8 + n:]
meta = hdr.pop('__metadata__')
assert meta['format'] == 'dropnet-weights-v1', meta
assert int(meta['crc32'], 16) == zlib.crc32(data), 'data crc'
fc = meta['file_crc32']
assert int(fc, 16) == zlib.crc32(raw.replace(fc.encode(), b'00000000', 1)), 'file crc'
t = {}
for k, v in hdr.items():
    b, e = v['data_offsets']
    assert v['dtype'] == 'F32'
    t[k] = np.frombuffer(data[b:e], dtype='<f4').reshape(v['shape'])
npy = np.load(d + '/w.npy')
assert npy.dtype == np.float32 and npy.shape == (6, 2, 3, 3)
assert np.array_equal(npy, t['conv1.weight'])
np.save(d + '/from_numpy.npy', (t['conv1.weight'] * 2).astype(np.float32))
np.save(d + '/f64.npy', np.zeros(3))
with open(d + '/vals.txt', 'w') as f:
    f.write(' '.join(repr(float(x)) for x in t['conv1.bias'].ravel()))
print('ok', sorted(t))
)";
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script + " " + dir.path().string()).c_str()), 0);
  std::ifstream vals(dir.file("vals.txt"));
  for (float b : bias) {
    double x;
    vals >> x;
    EXPECT_EQ(static_cast<float>(x), b);
  }
  Tensor fromnp = read_npy(dir.file("from_numpy.npy"));
  EXPECT_EQ(fromnp.shape(), (Shape{6, 2, 3, 3}));
  std::vector<float> got = fromnp.to_host();
  for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(got[i], w[i] * 2) << i;
  EXPECT_NE(input_error_of([&] { read_npy(dir.file("f64.npy")); }).find("'<f8'"), std::string::npos);
}

}  // namespace
}  // namespace dropnet
