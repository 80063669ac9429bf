// Owned-or-viewed bytes and read-only file mappings.
#include "softreg/bytes.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "softreg/error.hpp"
#include "softreg/parallel.hpp"

namespace softreg {

Bytes::Bytes(std::vector<std::uint8_t> bytes) {
  auto owned = std::make_shared<std::vector<std::uint8_t>>(std::move(bytes));
  owned_ = owned.get();
  data_ = owned->data();
  size_ = owned->size();
  owner_ = std::move(owned);
}

Bytes Bytes::view(std::shared_ptr<const void> keep_alive, const std::uint8_t* data, std::size_t size) {
  Bytes bytes;
  bytes.owner_ = std::move(keep_alive);
  bytes.data_ = data;
  bytes.size_ = size;
  return bytes;
}

Bytes Bytes::subview(std::size_t offset, std::size_t size) const {
  if (offset > size_ || size > size_ - offset) throw Error("Bytes::subview out of range");
  return view(owner_, data_ + offset, size);
}

std::uint8_t* Bytes::mutable_data() {
  // Another Bytes sharing the vector would see the write: copy unless this is its only user.
  if (!owned_ || owner_.use_count() > 1) *this = Bytes(std::vector<std::uint8_t>(begin(), end()));
  return owned_->data();
}

void Bytes::resize(std::size_t size) {
  mutable_data();
  owned_->resize(size);
  data_ = owned_->data();
  size_ = size;
}

bool operator==(const Bytes& a, const Bytes& b) {
  return a.size_ == b.size_ && (a.data_ == b.data_ || std::equal(a.begin(), a.end(), b.begin()));
}

namespace {

// Mappings smaller than this are touched on the calling thread alone: threads cost more than they save.
constexpr std::size_t kParallelTouchBytes = std::size_t{8} << 20;
constexpr std::size_t kPageBytes = 4096;
// Files of at least this size are mapped with MADV_HUGEPAGE, so that what the kernel reads into the
// page cache through the mapping comes in 2 MB pieces (folios), each mapped by one page-table entry:
// populating Fashion-MNIST's 47 MB of training images then takes 0.08 ms instead of 1.9, and the
// shuffled rows cost fewer TLB misses (Zen 4 under KVM, BENCHMARKS.md). Pages already in the page
// cache stay as they are (a file written in one go is mostly in 2 MB pieces already; see
// kRefillAtMostBytes for those that are not); those this guest's memory reclaim has evicted come back
// in 2 MB pieces.
constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// Reads one byte of every page. Even after MAP_POPULATE, the first access to each page of a mapping
// costs about 1.7 us on the virtual machines we measured (47 MB of images: 20 ms), against 4 ms for
// reading all of it afterwards, so the first touch is spread over every core.
void touch_pages(const std::uint8_t* data, std::size_t size) {
  read_on_every_core(size, kParallelTouchBytes, [data](std::size_t, std::size_t begin, std::size_t end) {
    std::uint8_t sink = 0;
    for (std::size_t i = begin; i < end; i += kPageBytes)
      sink = static_cast<std::uint8_t>(sink ^ data[i]);
    asm volatile("" : : "r"(sink));  // the reads must happen though nothing uses them
  });
}

// A file's pages that a mapping shows in 2 MB pieces are mapped by one page-table entry each, and the
// shuffled rows' TLB misses (nested page walks under a hypervisor) go away: on Zen 4 under KVM a
// quarter of the two-thread backward pass's samples sat on prefetches of the next batch's rows waiting
// for page walks with the training images in 4 KB pieces, 3 % in 2 MB ones, and the pass took 6.1-6.8
// ms an epoch against 5.7-6.1 (BENCHMARKS.md). MADV_HUGEPAGE only decides how pages that are read in
// come: pages the page cache holds already stay in the pieces they came in, and a plain read() (cat,
// cp, a backup) after memory reclaim brings them back in small ones. So map_file reads such a file's
// pages again, once (huge_page_refill). Not above this size, where reading it again costs more than a
// run gains.
constexpr std::size_t kRefillAtMostBytes = std::size_t{256} << 20;

// The bytes a /proc line such as "FilePmdMapped:    2048 kB" gives for the field `name` (with its colon),
// or nothing when the line is another field's.
std::optional<std::size_t> kilobytes_field(std::string_view line, std::string_view name) {
  if (!line.starts_with(name)) return std::nullopt;
  return std::strtoull(std::string(line.substr(name.size())).c_str(), nullptr, 10) * 1024;
}

// Whether the page cache holds any file in 2 MB pieces (/proc/meminfo's FileHugePages): where it holds
// none, the kernel or its file systems most likely cannot, and reading one piece again would cost
// each run a few milliseconds for nothing.
bool file_huge_pages_in_use() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (const auto bytes = kilobytes_field(line, "FileHugePages:")) return *bytes > 0;
  }
  return false;
}

// Drops the mapping's pages in [begin, begin + length) and the page cache's copy of them (those that
// other processes map stay), and reads them again through the mapping: in 2 MB pieces where the
// kernel can. The mapping is private and unwritten, so MADV_DONTNEED only drops its page-table
// entries. Hints only: their errors leave the mapping as it was, still correct.
void read_again(int fd, const std::uint8_t* data, std::size_t begin, std::size_t length) {
  void* start = const_cast<std::uint8_t*>(data + begin);
  ::madvise(start, length, MADV_DONTNEED);
  ::posix_fadvise(fd, static_cast<off_t>(begin), static_cast<off_t>(length), POSIX_FADV_DONTNEED);
  ::madvise(start, length, MADV_POPULATE_READ);
}

// See kRefillAtMostBytes. A file none of whose pages are in 2 MB pieces has its first piece read
// again first, and the rest only if that one came back as one.
void read_again_in_huge_pages(int fd, const MappedFile& mapped) {
  if (reinterpret_cast<std::uintptr_t>(mapped.data) % kHugePageBytes != 0) return;  // cannot be, then
  std::optional<std::size_t> huge = huge_mapped_bytes(mapped.data);
  if (!huge) return;
  const HugePageRefill refill = huge_page_refill(mapped.size, *huge, *huge == 0 && file_huge_pages_in_use());
  if (refill == HugePageRefill::kNone) return;
  if (refill == HugePageRefill::kFirstPieceThenAll) {
    read_again(fd, mapped.data, 0, kHugePageBytes);
    huge = huge_mapped_bytes(mapped.data);
    if (!huge || *huge == 0) return;
  }
  read_again(fd, mapped.data, 0, mapped.size);
}

}  // namespace

std::vector<std::uint8_t> zeroed_bytes(std::size_t size) {
  std::vector<std::uint8_t> bytes;
  bytes.reserve(size);  // allocated, not yet written: a large allocation is fresh pages from mmap
  const auto begin = reinterpret_cast<std::uintptr_t>(bytes.data());
  const std::uintptr_t first = (begin + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  const std::uintptr_t last = (begin + size) / kHugePageBytes * kHugePageBytes;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);  // a hint
  bytes.resize(size);
  return bytes;
}

std::optional<std::size_t> huge_mapped_bytes(const void* start) {
  std::ifstream smaps("/proc/self/smaps");
  if (!smaps) return std::nullopt;
  char header[32];
  std::snprintf(header, sizeof header, "%lx-",
                static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(start)));
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    if (!inside) {
      inside = line.starts_with(header);
      continue;
    }
    if (const auto bytes = kilobytes_field(line, "FilePmdMapped:")) return bytes;
    // The next mapping's header (a lowercase hex address; fields start with a capital): no such field.
    if (!line.empty() && ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')))
      return std::nullopt;
  }
  return std::nullopt;
}

HugePageRefill huge_page_refill(std::size_t file_bytes, std::size_t huge_bytes, bool others_in_huge_pages) {
  const std::size_t coverable = file_bytes / kHugePageBytes * kHugePageBytes;
  // Two pieces at least, and one piece of slack: the kernel may have found no free 2 MB for one.
  if (file_bytes > kRefillAtMostBytes || coverable < 2 * kHugePageBytes) return HugePageRefill::kNone;
  if (huge_bytes + kHugePageBytes >= coverable) return HugePageRefill::kNone;
  if (huge_bytes > 0) return HugePageRefill::kAll;  // the kernel can: some are in 2 MB pieces
  return others_in_huge_pages ? HugePageRefill::kFirstPieceThenAll : HugePageRefill::kNone;
}

MappedFile::~MappedFile() {
  if (data && size > 0) ::munmap(const_cast<std::uint8_t*>(data), size);
}

std::size_t read_on_every_core(std::size_t size, std::size_t parallel_from,
                               const std::function<void(std::size_t, std::size_t, std::size_t)>& read) {
  const std::size_t threads = size < parallel_from ? 1 : static_cast<std::size_t>(hardware_threads());
  const std::size_t pages = (size + kPageBytes - 1) / kPageBytes;
  const std::size_t share = (pages + threads - 1) / threads * kPageBytes;
  const std::size_t parts = size == 0 ? 1 : (size + share - 1) / share;
  std::vector<std::thread> helpers;
  for (std::size_t part = 1; part < parts; ++part) {
    const std::size_t begin = part * share, end = std::min(size, begin + share);
    try {
      helpers.emplace_back(read, part, begin, end);
    } catch (const std::system_error&) {  // no thread to be had: this one reads the part
      read(part, begin, end);
    }
  }
  read(0, 0, std::min(size, share));
  for (std::thread& h : helpers)
    h.join();
  return parts;
}

std::shared_ptr<const MappedFile> map_file(const std::filesystem::path& path, MapPages pages) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error::in_file(path, std::string("cannot open for reading: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error::in_file(path,
                         S_ISDIR(st.st_mode) ? "is a directory, expected a file" : "is not a regular file");
  }
  auto mapped = std::make_shared<MappedFile>();
  mapped->size = static_cast<std::size_t>(st.st_size);
  if (mapped->size > 0) {
    void* p = ::mmap(nullptr, mapped->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int error = errno;
      ::close(fd);
      throw Error::in_file(path, std::string("cannot map into memory: ") + std::strerror(error));
    }
    mapped->data = static_cast<const std::uint8_t*>(p);
    // Before anything is read through it: see kHugePageBytes. Only a hint, so its errors do not matter.
    if (mapped->size >= kHugePageBytes) ::madvise(p, mapped->size, MADV_HUGEPAGE);
    if (pages != MapPages::kOnFirstRead) {
      if (::madvise(p, mapped->size, MADV_POPULATE_READ) == 0) {
        read_again_in_huge_pages(fd, *mapped);
      } else if (const int error = errno; error != EINVAL) {
        // EINVAL: a kernel before 5.14, without it; the pages come in as they are read
        ::close(fd);
        throw Error::in_file(path, std::string("cannot read into memory: ") + std::strerror(error));
      }
    }
    if (pages == MapPages::kPopulatedTouched) touch_pages(mapped->data, mapped->size);
  }
  ::close(fd);  // the mapping keeps the file open
  return mapped;
}

}  // namespace softreg
