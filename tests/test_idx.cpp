// IDX reader and dataset loading on tiny hand-made files: raw, gzipped, and each kind of malformed file.
#include <gtest/gtest.h>

#include <cstring>

#include "softreg/dataset.hpp"
#include "softreg/error.hpp"
#include "softreg/idx.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

using test::gzip_bytes;
using test::idx_bytes;
using test::TempDir;
using test::write_bytes;

const std::vector<std::uint8_t> kPixels = {0,   1,   2,   3,   4,   5,
                                           250, 251, 252, 253, 254, 255};  // 2 images of 2x3

using test::expect_error;

TEST(Idx, ReadsRawImages) {
  TempDir dir;
  write_bytes(dir / "img", idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels));
  const IdxArray a = read_idx_file(dir / "img", kIdxImagesMagic);
  EXPECT_EQ(a.dims, (std::vector<std::uint32_t>{2, 2, 3}));
  EXPECT_EQ(a.data, kPixels);
}

TEST(Idx, ReadsGzipDetectedByContentNotName) {
  TempDir dir;
  // A gzipped file without .gz and a raw file named .gz: both are read by what they contain.
  write_bytes(dir / "img", gzip_bytes(idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels)));
  write_bytes(dir / "raw.gz", idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels));
  EXPECT_EQ(read_idx_file(dir / "img", kIdxImagesMagic).data, kPixels);
  EXPECT_EQ(read_idx_file(dir / "raw.gz", kIdxImagesMagic).data, kPixels);
}

TEST(Idx, ReadsMultiMemberGzip) {
  const auto raw = idx_bytes(kIdxLabelsMagic, {4}, {1, 2, 3, 4});
  auto first = gzip_bytes(std::vector<std::uint8_t>(raw.begin(), raw.begin() + 5));
  const auto second = gzip_bytes(std::vector<std::uint8_t>(raw.begin() + 5, raw.end()));
  first.insert(first.end(), second.begin(), second.end());
  EXPECT_EQ(gunzip(first, "two-members"), raw);
}

TEST(Idx, ReadsLargeGzipWhoseTrailerSizeIsExact) {
  std::vector<std::uint8_t> data(3 * 1000 * 1000);
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<std::uint8_t>(i * 7 % 251);
  const auto raw = idx_bytes(kIdxImagesMagic, {3000, 25, 40}, data);
  EXPECT_EQ(gunzip(gzip_bytes(raw), "big"), raw);
}

TEST(Idx, RejectsWrongMagicWithHint) {
  const auto labels = idx_bytes(kIdxLabelsMagic, {2}, {0, 1});
  expect_error([&] { parse_idx(labels, kIdxImagesMagic, "f"); },
               "f: expected magic 2051, found 2049 (is this a labels file?)");
  const auto images = idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels);
  expect_error([&] { parse_idx(images, kIdxLabelsMagic, "f"); }, "found 2051 (is this an images file?)");
  const std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', 0, 0, 0, 0};
  expect_error([&] { parse_idx(png, kIdxImagesMagic, "f"); }, "(not an IDX file)");
  const auto floats = idx_bytes(0x00000D03, {1, 1, 1}, {0, 0, 0, 0});
  expect_error([&] { parse_idx(floats, kIdxImagesMagic, "f"); }, "element type 13");
  const auto four_dims = idx_bytes(0x00000804, {1, 1, 1, 1}, {0});
  expect_error([&] { parse_idx(four_dims, kIdxImagesMagic, "f"); }, "(4 dimensions)");
}

TEST(Idx, RejectsTooShortAndTruncatedHeader) {
  expect_error(
      [&] {
        parse_idx(std::vector<std::uint8_t>{0, 0}, kIdxImagesMagic, "f");
      },
      "too short for an IDX header (2 bytes)");
  auto bytes = idx_bytes(kIdxImagesMagic, {2, 2, 3}, {});
  bytes.resize(10);
  expect_error([&] { parse_idx(bytes, kIdxImagesMagic, "f"); },
               "truncated header: 3 dimensions need 16 bytes, file has 10");
}

TEST(Idx, RejectsTruncatedData) {
  auto short_data = kPixels;
  short_data.pop_back();
  expect_error(
      [&] {
        parse_idx(idx_bytes(kIdxImagesMagic, {2, 2, 3}, short_data), kIdxImagesMagic, "f");
      },
      "truncated: header says 2x2x3 = 12 bytes of data, found 11");
}

TEST(Idx, RejectsTrailingBytes) {
  auto long_data = kPixels;
  long_data.push_back(9);
  long_data.push_back(9);
  expect_error(
      [&] {
        parse_idx(idx_bytes(kIdxImagesMagic, {2, 2, 3}, long_data), kIdxImagesMagic, "f");
      },
      "2 trailing bytes after the 2x2x3 data");
}

TEST(Idx, RejectsZeroAndHugeDimensions) {
  expect_error(
      [&] {
        parse_idx(idx_bytes(kIdxImagesMagic, {0, 2, 3}, {}), kIdxImagesMagic, "f");
      },
      "dimension 0 is 0");
  expect_error(
      [&] {
        parse_idx(idx_bytes(kIdxImagesMagic, {0xffffffff, 0xffffffff, 0xffffffff}, {}), kIdxImagesMagic, "f");
      },
      "implausibly large");
}

TEST(Idx, RejectsCorruptAndTruncatedGzip) {
  TempDir dir;
  auto gz = gzip_bytes(idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels));
  auto corrupt = gz;
  for (std::size_t i = 10; i < corrupt.size() - 8; ++i)
    corrupt[i] ^= 0x5a;
  write_bytes(dir / "corrupt.gz", corrupt);
  expect_error([&] { read_idx_file(dir / "corrupt.gz", kIdxImagesMagic); },
               "corrupt.gz: gzip data is corrupt");
  auto truncated = gz;
  truncated.resize(truncated.size() - 6);
  write_bytes(dir / "truncated.gz", truncated);
  expect_error([&] { read_idx_file(dir / "truncated.gz", kIdxImagesMagic); },
               "truncated.gz: gzip data is corrupt or truncated");
  write_bytes(dir / "tiny.gz", {0x1f, 0x8b, 8});
  expect_error([&] { read_idx_file(dir / "tiny.gz", kIdxImagesMagic); }, "gzip data is truncated (3 bytes)");
}

TEST(Idx, RejectsMissingFileAndFolder) {
  TempDir dir;
  expect_error([&] { read_idx_file(dir / "nope", kIdxImagesMagic); }, "nope: cannot open for reading");
  expect_error([&] { read_idx_file(dir.path(), kIdxImagesMagic); }, "is a directory, expected a file");
}

TEST(Dataset, LoadsMatchingImagesAndLabels) {
  TempDir dir;
  write_bytes(dir / "img", idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels));
  write_bytes(dir / "lbl.gz", gzip_bytes(idx_bytes(kIdxLabelsMagic, {2}, {9, 0})));
  const Dataset set = load_dataset(dir / "img", dir / "lbl.gz", 10);
  EXPECT_EQ(set.count, 2u);
  EXPECT_EQ(set.height, 2u);
  EXPECT_EQ(set.width, 3u);
  EXPECT_EQ(set.features(), 6u);
  EXPECT_EQ(set.image(1)[0], 250);
  EXPECT_EQ(set.labels, (std::vector<Label>{9, 0}));
}

TEST(Dataset, RejectsCountMismatch) {
  TempDir dir;
  write_bytes(dir / "img", idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels));
  write_bytes(dir / "lbl", idx_bytes(kIdxLabelsMagic, {3}, {1, 2, 3}));
  expect_error([&] { load_dataset(dir / "img", dir / "lbl", 10); },
               "lbl: has 3 labels, but img has 2 images");
}

TEST(Dataset, RejectsLabelOutOfRange) {
  TempDir dir;
  write_bytes(dir / "img", idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels));
  write_bytes(dir / "lbl", idx_bytes(kIdxLabelsMagic, {2}, {3, 10}));
  expect_error([&] { load_dataset(dir / "img", dir / "lbl", 10); },
               "lbl: label 10 at index 1 is out of range (expected < 10 classes)");
}

TEST(Dataset, LocatesExplicitFolderAndNamesMissingFiles) {
  TempDir dir;
  const auto images = idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels);
  const auto labels = idx_bytes(kIdxLabelsMagic, {2}, {1, 2});
  write_bytes(dir / "train-images-idx3-ubyte.gz", gzip_bytes(images));
  write_bytes(dir / "train-labels-idx1-ubyte", labels);
  write_bytes(dir / "t10k-images-idx3-ubyte", images);
  expect_error([&] { locate_data(dir.path()); }, "missing t10k-labels-idx1-ubyte[.gz]");
  write_bytes(dir / "t10k-labels-idx1-ubyte.gz", gzip_bytes(labels));
  const DataFiles files = locate_data(dir.path());
  EXPECT_EQ(files.train_images.filename(), "train-images-idx3-ubyte.gz");
  EXPECT_EQ(files.train_labels.filename(), "train-labels-idx1-ubyte");
  const TrainTestData data = load_train_test(files);
  EXPECT_EQ(data.train.count, 2u);
  EXPECT_EQ(data.test.labels, (std::vector<Label>{1, 2}));
  expect_error([&] { locate_data(dir / "absent"); }, "absent: no such folder");
  expect_error([&] { locate_data(dir / "train-labels-idx1-ubyte"); },
               "train-labels-idx1-ubyte: not a folder (give the folder that holds the four IDX files)");
  // A file of another kind: the flag that takes it.
  for (const auto& [name, hint] :
       {std::pair{"X.npy", "an .npy holds one array: give --train-features and --train-labels"},
        std::pair{"t.csv", "a table goes to --train-csv)"},
        std::pair{"t.csv.gz", "a table goes to --train-csv, compressed or not"},
        std::pair{"photo.jpg", "--data takes an IDX or image folder, or an .npz"}}) {
    const std::filesystem::path file = dir / name;  // a structured binding is not captured (C++20)
    write_bytes(file, {1, 2, 3});
    expect_error([&] { locate_data(file); }, std::string(name) + ": not a folder (" + hint);
  }
}

TEST(Dataset, RejectsTestImagesOfAnotherSize) {
  TempDir dir;
  write_bytes(dir / "train-images-idx3-ubyte", idx_bytes(kIdxImagesMagic, {2, 2, 3}, kPixels));
  write_bytes(dir / "train-labels-idx1-ubyte", idx_bytes(kIdxLabelsMagic, {2}, {1, 2}));
  write_bytes(dir / "t10k-images-idx3-ubyte", idx_bytes(kIdxImagesMagic, {2, 3, 2}, kPixels));
  write_bytes(dir / "t10k-labels-idx1-ubyte", idx_bytes(kIdxLabelsMagic, {2}, {1, 2}));
  expect_error([&] { load_train_test(locate_data(dir.path())); },
               "images are 3x2 but the training images are 2x3");
}

TEST(Dataset, SearchesEnvironmentFolderFirst) {
  TempDir dir;
  ::setenv("SOFTREG_DATA", dir.path().c_str(), 1);
  const auto folders = default_data_folders();
  ::unsetenv("SOFTREG_DATA");
  ASSERT_FALSE(folders.empty());
  EXPECT_EQ(folders.front(), dir.path());
  EXPECT_EQ(folders.back(), "/usr/share/datasets/fashion-mnist");
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

// Points SOFTREG_CACHE at a fresh folder for one test.
class IdxCache : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv("SOFTREG_CACHE", (dir_ / "cache").c_str(), 1); }
  void TearDown() override { ::unsetenv("SOFTREG_CACHE"); }
  std::vector<std::filesystem::path> entries() const {
    std::vector<std::filesystem::path> found;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "cache", ec))
      found.push_back(e.path());
    return found;
  }
  test::TempDir dir_;
  const std::vector<std::uint8_t> pixels_ = {0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255};
};

// Replaces an entry's decoded bytes with `data` and fixes its CRC, as a valid entry for other content.
void forge_entry(const std::filesystem::path& entry, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> bytes = read_file_bytes(entry);
  const std::size_t header = bytes.size() - data.size();
  std::copy(data.begin(), data.end(), bytes.begin() + static_cast<std::ptrdiff_t>(header));
  const std::uint32_t crc = libdeflate_crc32(0, data.data(), data.size());
  std::memcpy(bytes.data() + 40, &crc, 4);  // CacheHeader::crc32 sits after 8 + 4 * 8 bytes
  test::write_bytes(entry, bytes);
}

TEST_F(IdxCache, SecondReadComesFromTheCache) {
  const auto raw = test::idx_bytes(kIdxImagesMagic, {2, 2, 3}, pixels_);
  test::write_bytes(dir_ / "img.gz", test::gzip_bytes(raw));
  EXPECT_EQ(read_idx_file(dir_ / "img.gz", kIdxImagesMagic).data, pixels_);
  ASSERT_EQ(entries().size(), 1u);
  // An entry for other content (valid CRC) is what the next read returns: proof that it is used.
  auto other = raw;
  other.at(other.size() - 1) = 7;
  forge_entry(entries()[0], other);
  EXPECT_EQ(read_idx_file(dir_ / "img.gz", kIdxImagesMagic).data.back(), 7);
}

TEST_F(IdxCache, CorruptOrStaleEntriesArePassedOver) {
  const auto raw = test::idx_bytes(kIdxImagesMagic, {2, 2, 3}, pixels_);
  test::write_bytes(dir_ / "img.gz", test::gzip_bytes(raw));
  read_idx_file(dir_ / "img.gz", kIdxImagesMagic);
  ASSERT_EQ(entries().size(), 1u);
  // A flipped byte without a matching CRC: ignored, the file is decoded again and the entry rewritten.
  auto bytes = read_file_bytes(entries()[0]);
  bytes.back() ^= 0xff;
  test::write_bytes(entries()[0], bytes);
  EXPECT_EQ(read_idx_file(dir_ / "img.gz", kIdxImagesMagic).data, pixels_);
  EXPECT_EQ(read_file_bytes(entries()[0]).back(), pixels_.back());
  // A changed source (new content, new size): the old entry no longer matches.
  auto changed = pixels_;
  changed[0] = 99;
  test::write_bytes(dir_ / "img.gz", test::gzip_bytes(test::idx_bytes(kIdxImagesMagic, {3, 2, 2}, changed)));
  const IdxArray reread = read_idx_file(dir_ / "img.gz", kIdxImagesMagic);
  EXPECT_EQ(reread.dims, (std::vector<std::uint32_t>{3, 2, 2}));
  EXPECT_EQ(reread.data[0], 99);
}

// An entry large enough to be checked in parts, one per core: the parts' CRCs combine into the whole
// entry's (a forged entry with the whole CRC is used), and a byte flipped in the last part is caught.
TEST_F(IdxCache, LargeEntriesAreCheckedInPartsOnEveryCore) {
  const std::uint32_t count = 5000, side = 32;  // 5.1 MB of pixels: above the size checked in parts
  std::vector<std::uint8_t> pixels(std::size_t{count} * side * side);
  for (std::size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = static_cast<std::uint8_t>((i * 7) ^ (i >> 11));
  const auto raw = test::idx_bytes(kIdxImagesMagic, {count, side, side}, pixels);
  test::write_bytes(dir_ / "big.gz", test::gzip_bytes(raw));
  EXPECT_EQ(read_idx_file(dir_ / "big.gz", kIdxImagesMagic).data, pixels);
  ASSERT_EQ(entries().size(), 1u);
  EXPECT_EQ(read_idx_file(dir_ / "big.gz", kIdxImagesMagic).data, pixels);  // from the entry

  auto other = raw;
  other.at(16) = 1;                // the first pixel, in the first part
  other.at(other.size() - 1) = 2;  // the last, in the last part
  forge_entry(entries()[0], other);
  const IdxArray forged = read_idx_file(dir_ / "big.gz", kIdxImagesMagic);
  EXPECT_EQ(forged.data.data()[0], 1);
  EXPECT_EQ(forged.data.back(), 2);

  auto bytes = read_file_bytes(entries()[0]);
  bytes.at(bytes.size() - 100) ^= 0x10;  // no longer matches the forged CRC: passed over, decoded again
  test::write_bytes(entries()[0], bytes);
  EXPECT_EQ(read_idx_file(dir_ / "big.gz", kIdxImagesMagic).data, pixels);
  EXPECT_EQ(read_file_bytes(entries()[0]).back(), raw.back());  // the entry was written anew
}

TEST_F(IdxCache, KeepsAtMostSixteenEntries) {
  for (int i = 0; i < 20; ++i) {
    const auto name = "img" + std::to_string(i) + ".gz";
    test::write_bytes(dir_ / name, test::gzip_bytes(test::idx_bytes(kIdxImagesMagic, {2, 2, 3}, pixels_)));
    read_idx_file(dir_ / name, kIdxImagesMagic);
  }
  EXPECT_EQ(entries().size(), 16u);
  // The newest is among those kept.
  bool newest_kept = false;
  for (const auto& e : entries())
    newest_kept = newest_kept || e.filename().string().find("img19.gz") != std::string::npos;
  EXPECT_TRUE(newest_kept);
}

TEST_F(IdxCache, OffMeansNoEntriesAndRawFilesNeedNone) {
  test::write_bytes(dir_ / "raw", test::idx_bytes(kIdxImagesMagic, {2, 2, 3}, pixels_));
  read_idx_file(dir_ / "raw", kIdxImagesMagic);
  EXPECT_TRUE(entries().empty());  // nothing to save for an uncompressed file
  ::setenv("SOFTREG_CACHE", "off", 1);
  EXPECT_TRUE(idx_cache_folder().empty());
  test::write_bytes(dir_ / "img.gz", test::gzip_bytes(test::idx_bytes(kIdxImagesMagic, {2, 2, 3}, pixels_)));
  EXPECT_EQ(read_idx_file(dir_ / "img.gz", kIdxImagesMagic).data, pixels_);
  EXPECT_TRUE(entries().empty());
  // Bad files keep failing with their own message, cached or not.
  test::write_bytes(dir_ / "bad.gz", test::gzip_bytes(test::idx_bytes(kIdxLabelsMagic, {2}, {1, 2})));
  ::setenv("SOFTREG_CACHE", (dir_ / "cache").c_str(), 1);
  for (int attempt = 0; attempt < 2; ++attempt) {
    EXPECT_THROW(read_idx_file(dir_ / "bad.gz", kIdxImagesMagic), Error);
  }
}

}  // namespace
}  // namespace softreg
