// Bad input never crashes: thousands of mutated IDX, gzip and safetensors files must each either load
// or fail with softreg::Error (run under SOFTREG_SANITIZE=ON to also catch any out-of-bounds access).
#include <gtest/gtest.h>

#include <random>

#include "softreg/error.hpp"
#include "softreg/idx.hpp"
#include "softreg/model_io.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

// A copy of `bytes` with a few random flips, truncations, insertions or 32-bit overwrites.
std::vector<std::uint8_t> mutate(std::vector<std::uint8_t> bytes, std::mt19937& gen) {
  const int edits = 1 + static_cast<int>(gen() % 4);
  for (int e = 0; e < edits; ++e) {
    const std::size_t at = bytes.empty() ? 0 : gen() % bytes.size();
    switch (gen() % 4) {
      case 0:
        if (!bytes.empty()) bytes[at] ^= static_cast<std::uint8_t>(1u << (gen() % 8));
        break;
      case 1:
        bytes.resize(at);
        break;
      case 2:
        bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::uint8_t>(gen()));
        break;
      default:  // a large or boundary number where a length or dimension might be
        for (int b = 0; b < 4 && at + b < bytes.size(); ++b)
          bytes[at + b] = (gen() % 2) ? 0xff : 0x00;
    }
  }
  return bytes;
}

template <class Parse>
void expect_only_softreg_errors(const std::vector<std::uint8_t>& valid, Parse&& parse, int rounds) {
  std::mt19937 gen(12345);
  int rejected = 0;
  for (int round = 0; round < rounds; ++round) {
    const std::vector<std::uint8_t> bad = mutate(valid, gen);
    try {
      parse(bad);
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "round " << round << ": not a softreg::Error: " << e.what();
    }
  }
  EXPECT_GT(rejected, rounds / 2);  // most mutations must be caught, not silently accepted
}

TEST(Robustness, MutatedIdxFilesFailCleanly) {
  std::vector<std::uint8_t> pixels(3 * 4 * 5);
  for (std::size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = static_cast<std::uint8_t>(i * 13);
  const auto raw = test::idx_bytes(kIdxImagesMagic, {3, 4, 5}, pixels);
  expect_only_softreg_errors(
      raw, [](const auto& b) { parse_idx(b, kIdxImagesMagic, "mutated"); }, 3000);
}

TEST(Robustness, MutatedGzipFilesFailCleanly) {
  std::vector<std::uint8_t> pixels(2000);
  for (std::size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = static_cast<std::uint8_t>(i % 7 * 30);
  const auto gz = test::gzip_bytes(test::idx_bytes(kIdxImagesMagic, {20, 10, 10}, pixels));
  expect_only_softreg_errors(
      gz, [](const auto& b) { parse_idx(gunzip(b, "mutated.gz"), kIdxImagesMagic, "mutated.gz"); }, 3000);
}

TEST(Robustness, MutatedModelFilesFailCleanly) {
  ModelFile file;
  Rng rng(2);
  file.model = SoftmaxModel::initialized(12, 3, 0.5, rng);
  file.class_names = {"a", "b", "c"};
  file.height = 3;
  file.width = 4;
  const std::string bytes = serialize_model(file);
  const std::vector<std::uint8_t> valid(bytes.begin(), bytes.end());
  expect_only_softreg_errors(
      valid,
      [](const auto& b) {
        parse_model(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), "m");
      },
      3000);
}

}  // namespace
}  // namespace softreg
