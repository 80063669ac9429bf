// Owned-or-viewed bytes and read-only file mappings.
#include "softreg/bytes.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
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
// cache stay as they are (a file written in one go is mostly in 2 MB pieces already); those this
// guest's memory reclaim has evicted come back in 2 MB pieces.
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

}  // namespace

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
    if (pages != MapPages::kOnFirstRead && ::madvise(p, mapped->size, MADV_POPULATE_READ) != 0) {
      const int error = errno;
      if (error != EINVAL) {  // EINVAL: a kernel before 5.14, without it; the pages come in as they are read
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
