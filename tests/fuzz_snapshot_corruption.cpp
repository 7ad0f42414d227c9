// Corruption fuzz: single-byte changes at random offsets of a saved snapshot pair (the weights
// and the solver state) must all be detected by restore_snapshot -- an input error every time,
// never a crash, never a silent success, and the solver left as it was.
// DROPNET_FUZZ_TRIALS / DROPNET_FUZZ_SEED override the trial count (default 400) and the seed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fileio.h"
#include "optim/snapshot.h"
#include "optim/solver.h"
#include "tests/testing/solvers.h"

namespace dropnet {
namespace {

namespace fs = std::filesystem;

const char* kYaml = R"(name: fuzznet
data:
  train: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 64, batch_size: 8, shuffle: true,
          scale: 0.00390625, prefetch: 0}
  test: {source: synthetic, shape: [1, 8, 8], num_classes: 4, num_samples: 40, batch_size: 8, scale: 0.00390625,
         prefetch: 0}
solver: {base_lr: 0.05, momentum: 0.9, lr_policy: inv, gamma: 0.01, power: 0.75, max_iter: 1000, display: 0,
         average_loss: 4, test_iter: 1}
layers:
  - {name: data, type: data, top: [data, label]}
  - {name: conv1, type: conv, bottom: data, top: conv1, num_output: 3, kernel: 3, weight_filler: {type: xavier}}
  - {name: relu1, type: relu, bottom: conv1, top: relu1}
  - {name: fc1, type: fc, bottom: relu1, top: fc1, num_output: 4, weight_filler: {type: xavier}}
  - {name: loss, type: softmax_loss, bottom: [fc1, label], top: loss}
)";

std::unique_ptr<Solver> make_solver() { return testing::quiet_solver(kYaml, "fuzznet.yaml", 3); }

// A plain (non-atomic, unsynced) write: the fuzz rewrites files hundreds of times.
void put_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

int64_t env_int(const char* name, int64_t def) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : def;
}

TEST(SnapshotCorruption, EverySingleByteChangeIsDetected) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("dropnet_fuzz_corrupt_{}", ::getpid());
  fs::remove_all(dir);
  auto trained = make_solver();
  trained->step(5);
  trained->test(1);
  save_snapshot(*trained, dir.string(), "fz", 0);
  const std::string files[2] = {(dir / "fz_iter_5.safetensors").string(), (dir / "fz_iter_5.solverstate").string()};
  const std::string originals[2] = {read_file(files[0]), read_file(files[1])};

  auto target = make_solver();
  restore_snapshot(*target, dir.string());  // the intact pair loads
  ASSERT_EQ(target->iter(), 5);
  auto fresh = make_solver();
  const std::vector<float> params0 = fresh->train_net().param_values().to_host();
  const std::vector<float> hist0 = fresh->history().to_host();

  const int64_t trials = std::max<int64_t>(env_int("DROPNET_FUZZ_TRIALS", 400), 1);
  std::mt19937_64 rng(static_cast<uint64_t>(env_int("DROPNET_FUZZ_SEED", 20240607)));
  int64_t detected[2] = {0, 0}, silent[2] = {0, 0}, wrong_kind[2] = {0, 0}, changed_solver = 0;
  int64_t header_hits = 0;
  for (int64_t t = 0; t < trials; ++t) {
    const int which = static_cast<int>(t % 2);
    std::string bytes = originals[which];
    const size_t off = std::uniform_int_distribution<size_t>(0, bytes.size() - 1)(rng);
    const auto delta = static_cast<unsigned char>(std::uniform_int_distribution<int>(1, 255)(rng));
    bytes[off] = static_cast<char>(static_cast<unsigned char>(bytes[off]) ^ delta);
    uint64_t hlen;
    std::memcpy(&hlen, originals[which].data(), 8);
    if (off < 8 + hlen) ++header_hits;
    put_file(files[which], bytes);
    try {
      restore_snapshot(*fresh, dir.string());
      ++silent[which];
      ADD_FAILURE() << "undetected: " << files[which] << " byte " << off << " ^= 0x" << std::hex << int(delta);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::Input) {
        ++detected[which];
      } else {
        ++wrong_kind[which];
        ADD_FAILURE() << "internal error instead of an input error: " << e.what();
      }
    } catch (const std::exception& e) {
      ++wrong_kind[which];
      ADD_FAILURE() << "non-dropnet exception: " << e.what();
    }
    if (fresh->iter() != 0 || fresh->train_net().param_values().to_host() != params0 ||
        fresh->history().to_host() != hist0) {
      ++changed_solver;
      fresh = make_solver();
    }
    put_file(files[which], originals[which]);
  }
  fmt::print("snapshot corruption fuzz: {} trials ({} in headers); weights: {} detected, {} silent, {} wrong kind; "
             "solver state: {} detected, {} silent, {} wrong kind; solver modified by a failed restore: {}; "
             "crashes: 0\n",
             trials, header_hits, detected[0], silent[0], wrong_kind[0], detected[1], silent[1], wrong_kind[1],
             changed_solver);
  EXPECT_EQ(detected[0] + detected[1], trials);
  EXPECT_EQ(changed_solver, 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dropnet
