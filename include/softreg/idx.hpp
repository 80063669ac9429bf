// Reader for IDX files, the format of the MNIST family: a big-endian header (magic number with the
// element type and the number of dimensions, then each dimension) followed by the raw elements.
// Files may be gzip-compressed; compression is detected from the content, not the name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "softreg/bytes.hpp"

namespace softreg {

/// Magic numbers of unsigned-byte IDX files: 0x00000803 (3-D images) and 0x00000801 (1-D labels).
inline constexpr std::uint32_t kIdxImagesMagic = 2051;
inline constexpr std::uint32_t kIdxLabelsMagic = 2049;

/// An IDX array of unsigned bytes: its dimensions and its elements in row-major order (read from a
/// file: a view of the memory-mapped file or of the decoded buffer, never a second copy).
struct IdxArray {
  std::vector<std::uint32_t> dims;
  Bytes data;
};

/// True when the bytes start with the gzip signature (1f 8b).
bool is_gzip(std::span<const std::uint8_t> bytes);

/// Decompresses a whole gzip buffer (all members). `source` names the file in error messages.
std::vector<std::uint8_t> gunzip(std::span<const std::uint8_t> compressed, const std::string& source);

/// Reads a whole file into memory.
std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path);

/// Parses an unsigned-byte IDX buffer (already decompressed) whose magic must be `expected_magic`.
/// Checks the magic, the dimension sizes and that the buffer length matches the header exactly (unless
/// check_length is false: then only the header is read and `data` is left empty).
IdxArray parse_idx(std::span<const std::uint8_t> bytes, std::uint32_t expected_magic,
                   const std::string& source, bool check_length = true);

/// Where decoded copies of gzip-compressed IDX files are kept, so later runs skip the decompression:
/// $SOFTREG_CACHE, else $XDG_CACHE_HOME/softreg/idx, else ~/.cache/softreg/idx. Empty when
/// SOFTREG_CACHE is "off" (or no folder can be named).
std::filesystem::path idx_cache_folder();

/// Reads an IDX file, raw or gzip-compressed, and parses it (see parse_idx). A raw file is
/// memory-mapped and its elements used in place. A gzipped file's decoded bytes are taken from the
/// cache (memory-mapped too) when its entry matches the file (size, modification time, inode) and its
/// CRC-32 checks out; otherwise the file is decoded and the entry (re)written. A cache that cannot be
/// read or written is passed over: it only ever saves time.
IdxArray read_idx_file(const std::filesystem::path& path, std::uint32_t expected_magic);

}  // namespace softreg
