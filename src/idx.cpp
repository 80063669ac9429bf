// IDX reading: whole-buffer gzip decompression with libdeflate (several times faster than zlib's
// streaming inflate for files that fit in memory), then strict header checks.
#include "softreg/idx.hpp"

#include <libdeflate.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>

#include "softreg/decoded_cache.hpp"
#include "softreg/error.hpp"

namespace softreg {
namespace {

// Deflate cannot expand data by more than about 1032:1, so no honest gzip member decodes to more than
// this; it bounds the buffer we are willing to allocate for a corrupt or hostile file.
constexpr std::size_t kMaxDeflateRatio = 1032;
// No IDX file we read comes near this many elements (1 TiB); larger headers are corrupt.
constexpr std::uint64_t kMaxIdxElements = std::uint64_t{1} << 40;
// The IDX element type we read: 0x08 = unsigned byte.
constexpr std::uint8_t kIdxTypeUnsignedByte = 0x08;

std::uint32_t read_be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

std::uint32_t read_le32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) |
         (std::uint32_t{p[3]} << 24);
}

std::string magic_hint(std::uint32_t found) {
  if (found == kIdxLabelsMagic) return " (is this a labels file?)";
  if (found == kIdxImagesMagic) return " (is this an images file?)";
  if ((found >> 16) != 0) return " (not an IDX file)";
  const std::uint32_t type = (found >> 8) & 0xff;
  if (type != kIdxTypeUnsignedByte)
    return " (element type " + std::to_string(type) + "; only unsigned bytes, 8, are read)";
  return " (" + std::to_string(found & 0xff) + " dimensions)";
}

struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

}  // namespace

bool is_gzip(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

std::vector<std::uint8_t> gunzip(std::span<const std::uint8_t> compressed, const std::string& source) {
  // A gzip member is at least 18 bytes: 10 of header, 8 of trailer.
  if (compressed.size() < 18)
    throw Error(source + ": gzip data is truncated (" + std::to_string(compressed.size()) + " bytes)");
  std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> decompressor(libdeflate_alloc_decompressor());
  if (!decompressor) throw Error(source + ": out of memory for the gzip decompressor");

  const std::size_t max_output = compressed.size() * kMaxDeflateRatio + (1u << 16);
  // The trailer of the last member holds its size modulo 2^32: exact for the usual one-member file.
  std::size_t capacity =
      std::min<std::size_t>(read_le32(compressed.data() + compressed.size() - 4), max_output);
  std::vector<std::uint8_t> out(std::max<std::size_t>(capacity, 1));

  std::size_t in_pos = 0;
  std::size_t out_pos = 0;
  while (in_pos < compressed.size()) {
    std::size_t in_used = 0;
    std::size_t out_written = 0;
    const libdeflate_result result = libdeflate_gzip_decompress_ex(
        decompressor.get(), compressed.data() + in_pos, compressed.size() - in_pos, out.data() + out_pos,
        out.size() - out_pos, &in_used, &out_written);
    if (result == LIBDEFLATE_INSUFFICIENT_SPACE) {
      if (out.size() >= max_output)
        throw Error(source + ": gzip data is corrupt (decodes past any valid size)");
      out.resize(std::min(max_output, out.size() * 2 + (1u << 20)));
      continue;  // retry this member with room to spare
    }
    if (result != LIBDEFLATE_SUCCESS) {
      throw Error(source + ": gzip data is corrupt or truncated" +
                  (in_pos > 0 ? " (after byte " + std::to_string(in_pos) + ")" : std::string()));
    }
    in_pos += in_used;
    out_pos += out_written;
  }
  out.resize(out_pos);
  return out;
}

std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error::in_file(path, "is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error::in_file(path, "cannot open for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw Error::in_file(path, "cannot determine the file size");
  in.seekg(0, std::ios::beg);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw Error::in_file(path, "read error");
  }
  return bytes;
}

IdxArray parse_idx(std::span<const std::uint8_t> bytes, std::uint32_t expected_magic,
                   const std::string& source, bool check_length) {
  const auto fail = [&](const std::string& what) { return Error(source + ": " + what); };
  if (bytes.size() < 4) {
    throw fail("too short for an IDX header (" + std::to_string(bytes.size()) + " bytes)");
  }
  const std::uint32_t magic = read_be32(bytes.data());
  if (magic != expected_magic) {
    throw fail("expected magic " + std::to_string(expected_magic) + ", found " + std::to_string(magic) +
               magic_hint(magic));
  }
  // The magic fixes the type byte (0x08) and the dimension count (its low byte).
  static_assert((kIdxImagesMagic >> 8) == kIdxTypeUnsignedByte &&
                (kIdxLabelsMagic >> 8) == kIdxTypeUnsignedByte);
  const std::size_t ndims = magic & 0xff;
  const std::size_t header_size = 4 + 4 * ndims;
  if (bytes.size() < header_size) {
    throw fail("truncated header: " + std::to_string(ndims) + " dimensions need " +
               std::to_string(header_size) + " bytes, file has " + std::to_string(bytes.size()));
  }
  IdxArray array;
  std::uint64_t elements = 1;
  std::string shape;
  for (std::size_t i = 0; i < ndims; ++i) {
    const std::uint32_t dim = read_be32(bytes.data() + 4 + 4 * i);
    if (dim == 0) throw fail("dimension " + std::to_string(i) + " is 0");
    array.dims.push_back(dim);
    // Checked before multiplying, so the product never overflows.
    if (dim > kMaxIdxElements / elements) throw fail("dimensions are implausibly large");
    elements *= dim;
    if (i > 0) shape += 'x';
    shape += std::to_string(dim);
  }
  if (!check_length) return array;
  const std::uint64_t data_size = bytes.size() - header_size;
  if (data_size < elements) {
    throw fail("truncated: header says " + shape + " = " + std::to_string(elements) +
               " bytes of data, found " + std::to_string(data_size));
  }
  if (data_size > elements) {
    throw fail(std::to_string(data_size - elements) + " trailing bytes after the " + shape + " data");
  }
  array.data =
      std::vector<std::uint8_t>(bytes.begin() + static_cast<std::ptrdiff_t>(header_size), bytes.end());
  return array;
}

namespace {
// parse_idx on bytes that stay alive (a mapped file, a decoded buffer): the checks are the same, but
// the elements are used where they are instead of being copied.
IdxArray parse_idx_in_place(const Bytes& bytes, std::uint32_t expected_magic, const std::string& source) {
  const std::span<const std::uint8_t> all = bytes;
  IdxArray header_only = parse_idx(all.first(std::min<std::size_t>(all.size(), 4 + 4 * 255)), expected_magic,
                                   source, /*check_length=*/false);
  const std::size_t header_size = 4 + 4 * header_only.dims.size();
  std::uint64_t elements = 1;
  for (std::uint32_t d : header_only.dims)
    elements *= d;
  if (all.size() - header_size != elements) parse_idx(all, expected_magic, source);  // throws the message
  header_only.data = bytes.subview(header_size, static_cast<std::size_t>(elements));
  return header_only;
}
}  // namespace

std::filesystem::path idx_cache_folder() {
  if (const char* env = std::getenv("SOFTREG_CACHE"); env && *env) {
    return std::string_view(env) == "off" ? std::filesystem::path() : std::filesystem::path(env);
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return std::filesystem::path(xdg) / "softreg/idx";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::filesystem::path(home) / ".cache/softreg/idx";
  return {};
}

namespace {

constexpr std::array<char, 8> kCacheMagic = {'S', 'R', 'I', 'D', 'X', 'C', '0', '1'};

std::filesystem::path cache_entry(const std::filesystem::path& folder, const std::filesystem::path& source) {
  std::error_code ec;
  return decoded_cache_entry(folder, std::filesystem::absolute(source, ec).lexically_normal().string(),
                             "-" + source.filename().string() + ".idx");
}

bool starts_with_gzip_signature(const std::filesystem::path& path) {  // cheap: two bytes
  std::ifstream in(path, std::ios::binary);
  std::uint8_t signature[2] = {0, 0};
  return in.read(reinterpret_cast<char*>(signature), 2) && is_gzip(signature);
}

}  // namespace

IdxArray read_idx_file(const std::filesystem::path& path, std::uint32_t expected_magic) {
  const std::filesystem::path folder = idx_cache_folder();
  const bool gzipped = starts_with_gzip_signature(path);
  const std::optional<CacheKey> source =
      gzipped && !folder.empty() ? file_cache_key(path, kCacheMagic) : std::nullopt;
  const std::filesystem::path entry = source ? cache_entry(folder, path) : std::filesystem::path();
  if (source) {
    if (std::optional<Bytes> cached = read_decoded_cache(entry, *source)) {
      return parse_idx_in_place(*cached, expected_magic, path.string());
    }
  }
  if (!gzipped) {
    // Used where it lies. (The same holds as for any mapped file: a file truncated by someone else while
    // softreg reads it can end the process; softreg itself only ever replaces files by renaming.)
    const std::shared_ptr<const MappedFile> mapped = map_file(path);
    return parse_idx_in_place(Bytes::view(mapped, mapped->data, mapped->size), expected_magic, path.string());
  }
  std::vector<std::uint8_t> bytes = gunzip(read_file_bytes(path), path.string());
  // Only a file that parses is worth keeping: a bad one must keep failing with its own message.
  parse_idx(std::span(bytes).first(std::min<std::size_t>(bytes.size(), 4 + 4 * 255)), expected_magic,
            path.string(), /*check_length=*/false);
  if (source) write_decoded_cache(entry, *source, bytes);
  return parse_idx_in_place(Bytes(std::move(bytes)), expected_magic, path.string());
}

}  // namespace softreg
