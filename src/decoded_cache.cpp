// The decoded-copy cache shared by the IDX reader and image folders.
#include "softreg/decoded_cache.hpp"

#include <libdeflate.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "softreg/atomic_file.hpp"
#include "softreg/error.hpp"
#include "softreg/parallel.hpp"

namespace softreg {
namespace {

// The entry's header, then the bytes. (The layout of the IDX cache's entries since it began, whose key
// is the source file's size, modification time and inode.)
struct Header {
  char magic[8];
  std::uint64_t key[3];
  std::uint64_t data_size;
  std::uint32_t crc32;
  std::uint32_t reserved;
};
// Per extension: room for a handful of datasets of four files each.
constexpr std::size_t kMaxEntries = 16;
// Entries smaller than this are checked on the calling thread alone: threads cost more than they save.
constexpr std::size_t kParallelChecksumBytes = std::size_t{4} << 20;

// The CRC-32 of an entry's bytes, taken in parts on every core and combined (zlib's crc32_combine gives
// the CRC of two parts joined from theirs): the check is most of a warm load, and one Zen 4 core takes
// 3.3 ms for Fashion-MNIST's 47 MB of training images, two 1.8 ms. Reading every byte is also each
// page's first read, so the mapping needs no touching of its own (MapPages::kPopulated).
std::uint32_t crc32_on_every_core(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint32_t> crcs(static_cast<std::size_t>(hardware_threads()));
  std::vector<std::size_t> lengths(crcs.size());
  const std::size_t parts = read_on_every_core(size, kParallelChecksumBytes,
                                               [&](std::size_t part, std::size_t begin, std::size_t end) {
                                                 crcs[part] = libdeflate_crc32(0, data + begin, end - begin);
                                                 lengths[part] = end - begin;
                                               });
  std::uint32_t crc = crcs[0];
  for (std::size_t part = 1; part < parts; ++part)
    crc = static_cast<std::uint32_t>(crc32_combine(crc, crcs[part], static_cast<z_off_t>(lengths[part])));
  return crc;
}

void prune(const std::filesystem::path& folder, const std::filesystem::path& extension) {
  std::error_code ec;
  std::vector<std::pair<std::filesystem::file_time_type, std::filesystem::path>> entries;
  for (const auto& e : std::filesystem::directory_iterator(folder, ec)) {
    if (e.path().extension() == extension) entries.emplace_back(e.last_write_time(ec), e.path());
  }
  if (entries.size() <= kMaxEntries) return;
  std::sort(entries.begin(), entries.end());
  for (std::size_t i = 0; i + kMaxEntries < entries.size(); ++i)
    std::filesystem::remove(entries[i].second, ec);
}

}  // namespace

std::optional<Bytes> read_decoded_cache(const std::filesystem::path& entry, const CacheKey& key) {
  if (entry.empty()) return std::nullopt;
  std::shared_ptr<const MappedFile> mapped;
  try {
    mapped = map_file(entry, MapPages::kPopulated);
  } catch (const Error&) {
    return std::nullopt;
  }
  Header header{};
  if (mapped->size < sizeof header) return std::nullopt;
  std::memcpy(&header, mapped->data, sizeof header);
  if (std::memcmp(header.magic, key.magic.data(), sizeof header.magic) != 0 ||
      !std::equal(key.key.begin(), key.key.end(), header.key) ||
      header.data_size != mapped->size - sizeof header) {
    return std::nullopt;
  }
  const std::uint8_t* data = mapped->data + sizeof header;
  if (crc32_on_every_core(data, header.data_size) != header.crc32) return std::nullopt;
  return Bytes::view(mapped, data, header.data_size);
}

void write_decoded_cache(const std::filesystem::path& entry, const CacheKey& key,
                         std::span<const std::uint8_t> data) {
  if (entry.empty()) return;
  Header header{};
  std::memcpy(header.magic, key.magic.data(), sizeof header.magic);
  std::copy(key.key.begin(), key.key.end(), header.key);
  header.data_size = data.size();
  header.crc32 = libdeflate_crc32(0, data.data(), data.size());
  try {
    std::error_code ec;
    std::filesystem::create_directories(entry.parent_path(), ec);
    write_file_atomic(entry, {std::string_view(reinterpret_cast<const char*>(&header), sizeof header),
                              std::string_view(reinterpret_cast<const char*>(data.data()), data.size())});
  } catch (const Error&) {
    // A read-only or full disk: the cache only saves time, so carry on without it.
  }
  prune(entry.parent_path(), entry.extension());
}

std::optional<CacheKey> file_cache_key(const std::filesystem::path& path, const std::array<char, 8>& magic) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return CacheKey{magic,
                  {static_cast<std::uint64_t>(st.st_size),
                   static_cast<std::uint64_t>(static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 +
                                              st.st_mtim.tv_nsec),
                   static_cast<std::uint64_t>(st.st_ino)}};
}

std::filesystem::path decoded_cache_entry(const std::filesystem::path& folder, std::string_view text,
                                          std::string_view suffix) {
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a: the entry name only has to be stable
  for (unsigned char c : text)
    hash = (hash ^ c) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return folder / (std::string(hex) + std::string(suffix));
}

}  // namespace softreg
