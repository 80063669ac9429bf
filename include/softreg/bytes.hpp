// Bytes that are either owned (a vector) or a read-only view of memory that something else keeps
// alive, typically a memory-mapped file: data sets are used where they lie instead of being copied
// into fresh memory, whose first-touch page faults cost more than reading the file (12 us a page on
// some virtual machines). Reading never copies; writing goes through mutable_data() or resize(),
// which first make the bytes owned (copy on write), so a Dataset still behaves like a value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace softreg {

class Bytes {
 public:
  using value_type = std::uint8_t;
  using const_iterator = const std::uint8_t*;
  using iterator = const_iterator;

  Bytes() = default;
  /// Takes ownership of `bytes` (implicit, so `dataset.pixels = std::move(vector)` reads naturally).
  Bytes(std::vector<std::uint8_t> bytes);  // NOLINT(google-explicit-constructor)
  /// A view of `size` bytes at `data`, valid as long as `keep_alive` lives.
  static Bytes view(std::shared_ptr<const void> keep_alive, const std::uint8_t* data, std::size_t size);

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const std::uint8_t& operator[](std::size_t i) const { return data_[i]; }
  const std::uint8_t& back() const { return data_[size_ - 1]; }
  const_iterator begin() const { return data_; }
  const_iterator end() const { return data_ + size_; }
  operator std::span<const std::uint8_t>() const { return {data_, size_}; }  // NOLINT

  /// Bytes [offset, offset + size) of these, sharing their memory (a view: writing copies).
  Bytes subview(std::size_t offset, std::size_t size) const;

  /// True when the bytes are a view of memory owned elsewhere (e.g. a mapped file).
  bool is_view() const { return owned_ == nullptr; }

  /// Writable bytes: copies a view (or bytes shared with another copy) into memory of its own first.
  std::uint8_t* mutable_data();
  /// Resizes to `size` bytes (new bytes are zero), owning them afterwards.
  void resize(std::size_t size);

  friend bool operator==(const Bytes& a, const Bytes& b);

 private:
  std::shared_ptr<const void> owner_;           // keeps data_ alive
  std::vector<std::uint8_t>* owned_ = nullptr;  // the vector owner_ holds, when the bytes are all of it
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A whole file mapped read-only into memory (private: later changes to the file by others are not
/// promised to show). The bytes stay valid while the returned pointer (or a Bytes view holding it)
/// lives. Errors name the file.
struct MappedFile {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
};

/// How map_file brings a file's pages into the process. Files of 2 MB or more are read into the page
/// cache in 2 MB pieces where the kernel can (MADV_HUGEPAGE), each mapped by one page-table entry; a
/// populated mapping that the page cache holds in smaller pieces is read again once (huge_page_refill).
enum class MapPages {
  kOnFirstRead,  // a page fault on each page's first read
  kPopulated,    // mapped at once (MADV_POPULATE_READ, far cheaper than a fault on each first read); for a
                 // caller that reads every byte at once on every core (read_on_every_core)
  kPopulatedTouched,  // mapped at once and one byte of every page read from every core, because even a
                      // populated page costs microseconds on its first read on some virtual machines
};
std::shared_ptr<const MappedFile> map_file(const std::filesystem::path& path,
                                           MapPages pages = MapPages::kPopulatedTouched);

/// `size` zero bytes whose whole 2 MB pieces of memory come in 2 MB pages where the kernel can
/// (MADV_HUGEPAGE before the first write): fewer TLB misses for rows read in a shuffled order. Not for
/// every large buffer: on the virtual machines we measured, fresh 2 MB pages sometimes cost far more
/// to touch first than 4 KB ones (the host backs them anew): 400 MB took 1.2-1.3 s against 0.46-0.51.
std::vector<std::uint8_t> zeroed_bytes(std::size_t size);

/// How many bytes of the file mapping that starts at `start` are mapped in 2 MB pieces (one page-table
/// entry each), per /proc/self/smaps; nullopt where that cannot be read.
std::optional<std::size_t> huge_mapped_bytes(const void* start);

/// What map_file does about a populated file mapping the page cache holds in pieces smaller than 2 MB
/// (`huge_bytes` of `file_bytes` mapped in 2 MB pieces): nothing when (nearly) all of it is in them or
/// the file is over 256 MB; read it all again when some of it is (so the kernel can); when none is
/// and the page cache holds some other file in 2 MB pieces, read the first piece again and, if that
/// comes back as one, all of it.
enum class HugePageRefill { kNone, kAll, kFirstPieceThenAll };
HugePageRefill huge_page_refill(std::size_t file_bytes, std::size_t huge_bytes, bool others_in_huge_pages);

/// Calls read(part, begin, end) for consecutive parts [begin, end) of [0, size), one part per core,
/// each on a thread of its own (part 0 on the calling thread), split at multiples of 4096 bytes; with
/// fewer than `parallel_from` bytes, one part on the calling thread. Returns the number of parts, at
/// most hardware_threads(). `read` must not throw (it may run on a thread of its own).
std::size_t read_on_every_core(
    std::size_t size, std::size_t parallel_from,
    const std::function<void(std::size_t part, std::size_t begin, std::size_t end)>& read);

}  // namespace softreg
