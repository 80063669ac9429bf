// Decoded copies of slow-to-read inputs (gzip-compressed IDX files, folders of images) kept in the cache
// folder, so later runs map them in place instead of decoding again. An entry is a small header naming
// what it belongs to (a magic per kind of entry and a key of three numbers the reader recomputes from
// the source as it is now), then the bytes, protected by a CRC-32. A cache that cannot be read or written
// is passed over: it only ever saves time.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>

#include "softreg/bytes.hpp"

namespace softreg {

/// Which kind of entry (8 bytes) and which source it was made from.
struct CacheKey {
  std::array<char, 8> magic;
  std::array<std::uint64_t, 3> key;
};

/// The entry's bytes, mapped in place; nullopt if it is missing, for another key, or damaged.
std::optional<Bytes> read_decoded_cache(const std::filesystem::path& entry, const CacheKey& key);

/// Writes the entry atomically (errors are ignored), then keeps the folder to the 16 most recently
/// written entries with the same file extension: entries of sources that are gone are never read again.
void write_decoded_cache(const std::filesystem::path& entry, const CacheKey& key,
                         std::span<const std::uint8_t> data);

/// The key of an entry made from the file at `path` as it is now: its size, modification time and inode
/// (nullopt if it cannot be examined).
std::optional<CacheKey> file_cache_key(const std::filesystem::path& path, const std::array<char, 8>& magic);

/// A stable entry name in `folder` for `text` (a path, plus options): a hash of it, then `suffix`.
std::filesystem::path decoded_cache_entry(const std::filesystem::path& folder, std::string_view text,
                                          std::string_view suffix);

}  // namespace softreg
