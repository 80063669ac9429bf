// Bad input never crashes: thousands of mutated IDX, gzip and safetensors files must each either load
// or fail with softreg::Error (run under SOFTREG_SANITIZE=ON to also catch any out-of-bounds access).
#include <gtest/gtest.h>
#include <stb_image_write.h>

#include <random>

#include "softreg/error.hpp"
#include "softreg/idx.hpp"
#include "softreg/image.hpp"
#include "softreg/model_io.hpp"
#include "softreg/sources.hpp"
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

// Inputs the fuzz targets (fuzz/) found to crash a parser or make it allocate gigabytes, kept in
// tests/fixtures/fuzz-findings/<target>/ and fed to the same entry points here: each must now be a
// clear Error or a valid result. Under the sanitizer build this also proves no overrun is left.
namespace softreg {
namespace {

std::vector<std::filesystem::path> findings(const std::string& target) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(SOFTREG_FIXTURES_DIR) /
                                                               "fuzz-findings" / target))
    files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(FuzzFindings, SafetensorsNumberOverflowIsAnError) {
  // A data offset of 1e30816: nlohmann::json throws out_of_range, which escaped parse_model.
  for (const auto& path : findings("safetensors")) {
    const std::vector<std::uint8_t> bytes = read_file_bytes(path);
    test::expect_error(
        [&] {
          parse_model({reinterpret_cast<const char*>(bytes.data()), bytes.size()}, path.string());
        },
        "not valid JSON");
  }
}

TEST(FuzzFindings, SixteenBitPpmDecodes) {
  // stb's 16-bit PPM -> one channel overran its buffer; the image is now converted to grey here.
  const std::filesystem::path sixteen_bit =
      std::filesystem::path(SOFTREG_FIXTURES_DIR) /
      "fuzz-findings/image/crash-3cda6b4cb150c6cba44f2d7446744aa326919d59";
  const GrayImage finding = read_gray_image(sixteen_bit);  // a 2x1 P6 with maxval 289
  EXPECT_EQ(finding.width, 2);
  EXPECT_EQ(finding.height, 1);
  // A complete 16-bit PPM: white and black pixels.
  test::TempDir dir;
  const std::string header = "P6\n2 1\n65535\n";
  std::vector<std::uint8_t> bytes(header.begin(), header.end());
  bytes.insert(bytes.end(), 6, 0xff);  // pixel 1: R, G, B = 65535
  bytes.insert(bytes.end(), 6, 0x00);  // pixel 2: 0
  test::write_bytes(dir / "x.ppm", bytes);
  const GrayImage image = read_gray_image(dir / "x.ppm");
  ASSERT_EQ(image.pixels.size(), 2u);
  EXPECT_EQ(image.pixels[0], 255);
  EXPECT_EQ(image.pixels[1], 0);
}

TEST(FuzzFindings, PnmHeaderNumbersTooLargeForStbAreErrors) {
  // A 60-digit height: stb's int parser overflowed (UBSan).
  test::expect_error(
      [] {
        read_gray_image(std::filesystem::path(SOFTREG_FIXTURES_DIR) /
                        "fuzz-findings/image/pnm-overflow-4a93f0fa");
      },
      "PGM/PPM header out of range");
  EXPECT_EQ(findings("image").size(), 9u);
  // A JPEG whose Huffman table counts sum past 256 (stb wrote past its table).
  test::expect_error(
      [] {
        read_gray_image(std::filesystem::path(SOFTREG_FIXTURES_DIR) /
                        "fuzz-findings/image/jpeg-huffman-65f69dd2");
      },
      "corrupt JPEG: a Huffman table has");
  // A PNG cut off right after a chunk header that claims 1.4 GB.
  test::expect_error(
      [] {
        read_gray_image(std::filesystem::path(SOFTREG_FIXTURES_DIR) /
                        "fuzz-findings/image/png-short-chunk-646694de");
      },
      "truncated or corrupt PNG");
  // A 0 x 6,553,515 PPM: nothing to decode, and resizing it would have taken 1.4 GB.
  test::expect_error(
      [] {
        read_gray_image(std::filesystem::path(SOFTREG_FIXTURES_DIR) /
                        "fuzz-findings/image/zero-width-959bdfaf");
      },
      "it has no pixels");
  test::expect_error(
      [] {
        read_gray_image(std::filesystem::path(SOFTREG_FIXTURES_DIR) /
                        "fuzz-findings/image/pnm-overflow-9b562cc3");
      },
      "PGM/PPM header out of range");
}

// A JPEG whose scan decodes with a Huffman table it never defines: stb decoded it from whatever memory
// the table's place held, and in a fuzz run that made an index 16 MB past a 256-byte table (UBSan). Now
// refused before stb sees it; a valid JPEG with its tables cut out is refused the same way (as a
// Motion-JPEG frame, which leaves them to the standard, would be).
TEST(FuzzFindings, AJpegScanWithAnUndefinedHuffmanTableIsAnError) {
  test::expect_error(
      [] {
        read_gray_image(std::filesystem::path(SOFTREG_FIXTURES_DIR) /
                        "fuzz-findings/image/jpeg-undefined-huffman-cb5176e9");
      },
      "corrupt JPEG: a scan decodes with AC Huffman table 0, which the file has not defined");
  test::TempDir dir;
  std::vector<std::uint8_t> grey(16 * 8);
  for (std::size_t i = 0; i < grey.size(); ++i)
    grey[i] = static_cast<std::uint8_t>(i * 7);
  ASSERT_TRUE(stbi_write_jpg((dir / "plain.jpg").c_str(), 16, 8, 1, grey.data(), 90));
  std::vector<std::uint8_t> jpeg = read_file_bytes(dir / "plain.jpg");
  EXPECT_EQ(read_gray_image(dir / "plain.jpg").width, 16);
  // Every DHT segment (FF C4, its length) cut out.
  for (std::size_t i = 0; i + 3 < jpeg.size();) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC4) {
      const std::size_t length = static_cast<std::size_t>(jpeg[i + 2] << 8 | jpeg[i + 3]);
      jpeg.erase(jpeg.begin() + static_cast<std::ptrdiff_t>(i),
                 jpeg.begin() + static_cast<std::ptrdiff_t>(i + 2 + length));
    } else {
      ++i;
    }
  }
  test::write_bytes(dir / "no-tables.jpg", jpeg);
  test::expect_error([&] { read_gray_image(dir / "no-tables.jpg"); },
                     "a scan decodes with DC Huffman table 0, which the file has not defined");
}

TEST(FuzzFindings, ImageSizesAreReadThroughTheDecodersChecks) {
  // An image folder's sizes are read from the headers before anything is decoded; that read went to
  // stb unchecked, and a JPEG whose Huffman counts sum past 256 overran stb's table there (UBSan, in
  // an image-folder fuzz run). Each finding the decode refuses before stb sees it has no size either.
  const std::filesystem::path dir = std::filesystem::path(SOFTREG_FIXTURES_DIR) / "fuzz-findings/image";
  for (const char* name : {"jpeg-huffman-cb312e74", "jpeg-huffman-65f69dd2", "png-short-chunk-646694de",
                           "png-empty-idat-76978be9", "pnm-overflow-4a93f0fa", "pnm-overflow-9b562cc3"}) {
    EXPECT_THROW(read_gray_image(dir / name), Error) << name;
    EXPECT_FALSE(image_dimensions(dir / name).has_value()) << name;
  }
  // A readable image still has its size: the 2x1 16-bit PPM.
  EXPECT_EQ(image_dimensions(dir / "crash-3cda6b4cb150c6cba44f2d7446744aa326919d59"), (std::pair{2, 1}));
  EXPECT_FALSE(image_dimensions(dir / "no-such-file").has_value());

  // The folder that found it: its one image is skipped as unreadable, or named in the error.
  test::TempDir root;
  std::filesystem::create_directories(root / "train/class0");
  std::filesystem::copy_file(dir / "jpeg-huffman-cb312e74", root / "train/class0/image0.png");
  test::expect_error([&] { load_image_folder(root.path(), {.threads = 1, .use_cache = false}); },
                     "image0.png");
}

TEST(FuzzFindings, ChunksAndEntriesClaimingMoreThanTheFileAreErrors) {
  // A PNG whose IDAT chunk claims 1.4 GB (stb grew its buffer to that before reading); the fuzz
  // finding (an image-folder record) was such a PNG.
  test::TempDir dir;
  const std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0x00, 0x00, 0x00, 0x0d,
                                         'I',  'H', 'D', 'R', 0,    0,    0,    2,    0,    0,    0,    2,
                                         8,    0,   0,   0,   0,    0x57, 0xdd, 0x52, 0xf8, 0x55, 0x00, 0x00,
                                         0x00, 'I', 'D', 'A', 'T',  1,    2,    3,    4};
  test::write_bytes(dir / "huge-chunk.png", png);
  test::expect_error([&] { read_gray_image(dir / "huge-chunk.png"); }, "claims 1426063360 bytes");
  // An empty first IDAT chunk (after an ancillary "iDAT"): stb copied its 0 bytes to a null pointer
  // (UBSan, fuzzing, 2026-12-02). An empty IDAT after image data stays fine (Image.ReadsPngAndJpegAsGray).
  test::expect_error(
      [] {
        read_gray_image(std::filesystem::path(SOFTREG_FIXTURES_DIR) /
                        "fuzz-findings/image/png-empty-idat-76978be9");
      },
      "the first IDAT chunk (at byte 61) is empty");
  // A .npz entry claiming far more bytes than deflate can make of its compressed size.
  for (const auto& path : findings("npz"))
    test::expect_error([&] { read_npz_file(path); }, "(damaged archive?)");
}

}  // namespace
}  // namespace softreg
