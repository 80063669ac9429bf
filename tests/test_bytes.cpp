// Owned-or-viewed bytes: reads never copy, writes never reach a view's memory or another copy, and
// data sets come out of IDX files and the decoded cache as views of the mapped file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <iostream>

#include <algorithm>
#include <array>
#include <mutex>

#include "softreg/bytes.hpp"
#include "softreg/dataset.hpp"
#include "softreg/idx.hpp"
#include "softreg/parallel.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

TEST(Bytes, OwnedBytesAreWrittenInPlaceUntilShared) {
  Bytes a(std::vector<std::uint8_t>{1, 2, 3});
  EXPECT_FALSE(a.is_view());
  const std::uint8_t* before = a.data();
  a.mutable_data()[0] = 9;  // the only user: no copy
  EXPECT_EQ(a.data(), before);
  EXPECT_EQ(a, Bytes(std::vector<std::uint8_t>{9, 2, 3}));

  Bytes b = a;  // shares the memory until one of them writes
  EXPECT_EQ(b.data(), a.data());
  b.mutable_data()[1] = 7;
  EXPECT_NE(b.data(), a.data());
  EXPECT_EQ(a, Bytes(std::vector<std::uint8_t>{9, 2, 3}));
  EXPECT_EQ(b, Bytes(std::vector<std::uint8_t>{9, 7, 3}));

  b.resize(5);
  EXPECT_EQ(b, Bytes(std::vector<std::uint8_t>{9, 7, 3, 0, 0}));
  EXPECT_THROW(b.subview(4, 2), Error);
  EXPECT_EQ(b.subview(1, 2), Bytes(std::vector<std::uint8_t>{7, 3}));
}

TEST(Bytes, WritingAViewCopiesAndLeavesItsMemoryAlone) {
  auto memory = std::make_shared<std::vector<std::uint8_t>>(std::vector<std::uint8_t>{5, 6, 7, 8});
  Bytes view = Bytes::view(memory, memory->data() + 1, 2);
  EXPECT_TRUE(view.is_view());
  EXPECT_EQ(view[0], 6);
  EXPECT_EQ(std::span<const std::uint8_t>(view).size(), 2u);
  view.mutable_data()[0] = 0;
  EXPECT_FALSE(view.is_view());
  EXPECT_EQ(view, Bytes(std::vector<std::uint8_t>{0, 7}));
  EXPECT_EQ(*memory, (std::vector<std::uint8_t>{5, 6, 7, 8}));
}

TEST(MapFile, MapsWholeFilesAndNamesTheProblem) {
  test::TempDir dir;
  std::vector<std::uint8_t> big(9u << 20);  // above the size that is touched by several threads
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<std::uint8_t>(i * 31 + 7);
  test::write_bytes(dir / "big", big);
  const auto mapped = map_file(dir / "big");
  ASSERT_EQ(mapped->size, big.size());
  EXPECT_TRUE(std::equal(big.begin(), big.end(), mapped->data));
  EXPECT_EQ(map_file(dir / "big", MapPages::kOnFirstRead)->data[12345], big[12345]);

  test::write_bytes(dir / "empty", {});
  EXPECT_EQ(map_file(dir / "empty")->size, 0u);
  test::expect_error([&] { map_file(dir / "missing"); }, "missing: cannot open for reading");
  test::expect_error([&] { map_file(dir.path()); }, "is a directory, expected a file");
}

TEST(MapFile, PopulatedWithoutTouchingGivesTheSameBytes) {
  test::TempDir dir;
  std::vector<std::uint8_t> bytes(3 * 4096 + 5);
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::uint8_t>(i * 13 + 1);
  test::write_bytes(dir / "file", bytes);
  const auto mapped = map_file(dir / "file", MapPages::kPopulated);
  ASSERT_EQ(mapped->size, bytes.size());
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), mapped->data));
}

// The policy for files the page cache holds in pieces smaller than 2 MB (Fashion-MNIST's 47 MB of
// training images: 22 whole 2 MB pieces).
TEST(MapFile, ReadsAFileAgainInHugePagesOnlyWhereThatCanHelp) {
  constexpr std::size_t kMB = std::size_t{1} << 20, kImages = 47040064, kPieces = 22 * 2 * kMB;
  EXPECT_EQ(huge_page_refill(kImages, kPieces, true), HugePageRefill::kNone);            // all in 2 MB pieces
  EXPECT_EQ(huge_page_refill(kImages, kPieces - 2 * kMB, true), HugePageRefill::kNone);  // one piece short
  EXPECT_EQ(huge_page_refill(kImages, kPieces - 4 * kMB, false), HugePageRefill::kAll);
  EXPECT_EQ(huge_page_refill(kImages, 2 * kMB, false), HugePageRefill::kAll);
  // None in 2 MB pieces: try one piece only where the page cache holds other files in them.
  EXPECT_EQ(huge_page_refill(kImages, 0, true), HugePageRefill::kFirstPieceThenAll);
  EXPECT_EQ(huge_page_refill(kImages, 0, false), HugePageRefill::kNone);
  // Too small to gain, too large to read again at once.
  EXPECT_EQ(huge_page_refill(3 * kMB, 0, true), HugePageRefill::kNone);
  EXPECT_EQ(huge_page_refill(4 * kMB, 0, true), HugePageRefill::kFirstPieceThenAll);
  EXPECT_EQ(huge_page_refill(256 * kMB, 0, true), HugePageRefill::kFirstPieceThenAll);
  EXPECT_EQ(huge_page_refill(256 * kMB + 1, 0, true), HugePageRefill::kNone);
}

TEST(ZeroedBytes, AreZeroesOfTheSizeAskedFor) {
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, (std::size_t{5} << 20) + 3}) {
    const std::vector<std::uint8_t> bytes = zeroed_bytes(size);
    ASSERT_EQ(bytes.size(), size);
    EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; }));
  }
}

// Drops the file's pages from the page cache (written back first).
void evict_from_page_cache(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// A file read with plain reads comes back into the page cache in small pieces; mapped, it is read
// again in 2 MB ones where this kernel and file system can (as a control file read in through a
// mapping shows), and its bytes are the file's either way.
TEST(MapFile, AFileInSmallPagesIsMappedInHugeOnesWhereTheKernelCan) {
  test::TempDir dir;
  std::vector<std::uint8_t> bytes(std::size_t{12} << 20);
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::uint8_t>(i * 7 + i / 4096);
  test::write_bytes(dir / "rows", bytes);
  test::write_bytes(dir / "control", bytes);
  evict_from_page_cache(dir / "rows");
  evict_from_page_cache(dir / "control");
  {  // plain reads of 64 KB
    const int fd = ::open((dir / "rows").c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    std::vector<std::uint8_t> chunk(64 << 10);
    while (::read(fd, chunk.data(), chunk.size()) > 0) {
    }
    ::close(fd);
  }
  // The control is read in through the mapping, page by page: what the kernel can do here.
  const auto control = map_file(dir / "control", MapPages::kOnFirstRead);
  std::uint8_t sink = 0;
  for (std::size_t i = 0; i < control->size; i += 4096)
    sink = static_cast<std::uint8_t>(sink ^ control->data[i]);
  asm volatile("" : : "r"(sink));  // the reads must happen though nothing uses them

  const auto mapped = map_file(dir / "rows", MapPages::kPopulated);
  ASSERT_EQ(mapped->size, bytes.size());
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), mapped->data));
  const std::optional<std::size_t> can = huge_mapped_bytes(control->data);
  const std::optional<std::size_t> huge = huge_mapped_bytes(mapped->data);
  ASSERT_TRUE(huge.has_value() == can.has_value());
  if (!can || *can == 0) {
    std::cout << "this kernel or file system keeps files in small pages here: nothing more to check\n";
    return;
  }
  // All but at most one piece, as the control (the kernel may find no free 2 MB of memory for one).
  EXPECT_GE(*huge + (std::size_t{2} << 20), *can);
  EXPECT_EQ(huge_mapped_bytes(bytes.data()), std::nullopt);  // not the start of a mapping
}

// The parts are in order, cover every byte once, start at page boundaries, and each is read once.
TEST(ReadOnEveryCore, SplitsIntoPageAlignedPartsOneACore) {
  const std::size_t cores = static_cast<std::size_t>(hardware_threads());
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4096}, std::size_t{5} << 20,
                                 (std::size_t{5} << 20) + 4097, (std::size_t{9} << 20) + 3}) {
    std::mutex mutex;
    std::vector<std::array<std::size_t, 3>> seen;  // part, begin, end
    const std::size_t parts = read_on_every_core(size, std::size_t{4} << 20,
                                                 [&](std::size_t part, std::size_t begin, std::size_t end) {
                                                   const std::lock_guard lock(mutex);
                                                   seen.push_back({part, begin, end});
                                                 });
    SCOPED_TRACE(size);
    ASSERT_EQ(seen.size(), parts);
    EXPECT_LE(parts, cores);
    if (size < (std::size_t{4} << 20)) {
      EXPECT_EQ(parts, 1u);
    } else {
      EXPECT_EQ(parts > 1, cores > 1);
    }
    std::sort(seen.begin(), seen.end());
    std::size_t next = 0;
    for (std::size_t i = 0; i < seen.size(); ++i) {
      EXPECT_EQ(seen[i][0], i);
      EXPECT_EQ(seen[i][1], next);
      EXPECT_EQ(seen[i][1] % 4096, 0u);
      EXPECT_LE(seen[i][1], seen[i][2]);
      next = seen[i][2];
    }
    EXPECT_EQ(next, size);
  }
}

TEST(MapFile, DataSetsAreViewsOfTheirFiles) {
  test::TempDir dir;
  const std::vector<std::uint8_t> pixels = {1, 2, 3, 4, 5, 6, 7, 8};
  test::write_bytes(dir / "img", test::idx_bytes(kIdxImagesMagic, {2, 2, 2}, pixels));
  test::write_bytes(dir / "lab", test::idx_bytes(kIdxLabelsMagic, {2}, {0, 1}));
  test::write_bytes(dir / "img.gz", test::gzip_bytes(test::idx_bytes(kIdxImagesMagic, {2, 2, 2}, pixels)));

  const Dataset raw = load_dataset(dir / "img", dir / "lab", 2);
  EXPECT_TRUE(raw.pixels.is_view());
  EXPECT_EQ(raw.pixels, Bytes(pixels));
  // A gzipped file: the decoded buffer without its header, first without a cache, then from it.
  const char* before = std::getenv("SOFTREG_CACHE");
  const std::string saved = before ? before : "";
  for (const char* cache : {"off", ""}) {
    setenv("SOFTREG_CACHE", *cache ? cache : (dir / "cache").c_str(), 1);
    for (int pass = 0; pass < 2; ++pass) {
      const IdxArray a = read_idx_file(dir / "img.gz", kIdxImagesMagic);
      EXPECT_TRUE(a.data.is_view());
      EXPECT_EQ(a.data, Bytes(pixels)) << cache << " pass " << pass;
    }
  }
  EXPECT_FALSE(std::filesystem::is_empty(dir / "cache"));
  if (before) {
    setenv("SOFTREG_CACHE", saved.c_str(), 1);
  } else {
    unsetenv("SOFTREG_CACHE");
  }

  // Writing to a loaded data set changes the copy, never the file.
  Dataset copy = raw;
  copy.pixels.mutable_data()[0] = 99;
  EXPECT_EQ(load_dataset(dir / "img", dir / "lab", 2).pixels[0], 1);
  EXPECT_EQ(raw.pixels[0], 1);
}

}  // namespace
}  // namespace softreg
