// Image decoding with stb_image (Debian's libstb) and libwebp, and area-averaging resize.
#include "softreg/image.hpp"

#include <fmt/format.h>
#include <libexif/exif-data.h>
#include <webp/decode.h>

#include <cstdlib>

// stb_image (Debian's libstb-dev header) compiled here, private to this file (STB_IMAGE_STATIC: a
// program linking libsoftreg.a keeps its own stb_image, if it has one), rather than taken from Debian's
// prebuilt libstb.so, which only the tests' stbi_write_* calls use:
// - every allocation stb_image makes is zeroed. Its JPEG decoder reads a Huffman table that a file
//   never defined from memory left by earlier allocations: a crafted JPEG made it index 16 MB past a
//   256-byte table (fuzz_image found it; with every allocation filled with 0xff before use, the file
//   read past the table every time). Zeroed, such a table is an empty one and the file fails with "bad
//   huffman code"; check_jpeg_huffman_tables refuses such a scan before stb sees it anyway.
// - in the sanitizer and fuzz builds (SOFTREG_SANITIZE) the decoder is instrumented with the rest, so
//   the sanitizers and the fuzzers see inside it, where a hostile image does its harm.
#define STB_IMAGE_STATIC
#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(pointer, size) std::realloc(pointer, size)
#define STBI_FREE(pointer) std::free(pointer)
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "shared_library.hpp"
#include "softreg/error.hpp"
#include "softreg/idx.hpp"

namespace softreg {
namespace {

// Larger images than this are refused rather than decoded: no picture of one garment needs 100 MP.
constexpr long long kMaxImagePixels = 100'000'000;
// No compressed image holds more pixels per byte of file than this: deflate expands at most ~1032:1 and
// a 1-bit image packs 8 pixels a byte (JPEG and GIF compress far less). A header that claims more is a
// lie, caught before any pixel memory is allocated.
constexpr long long kMaxPixelsPerFileByte = 1032 * 8;

// Where the samples of a binary PGM (P5) or PPM (P6) start, and how many bytes they need; nullopt for
// other formats. Header: magic, then width, height and maxval separated by whitespace or # comments, then
// one whitespace byte.
struct RawSamples {
  std::size_t offset;
  unsigned long long bytes;
};
std::optional<RawSamples> pnm_samples(std::span<const std::uint8_t> file, int width, int height) {
  if (file.size() < 2 || file[0] != 'P' || (file[1] != '5' && file[1] != '6')) return std::nullopt;
  std::size_t i = 2;
  unsigned long long fields[3] = {0, 0, 0};
  for (unsigned long long& field : fields) {
    while (i < file.size() && (std::isspace(file[i]) || file[i] == '#')) {
      if (file[i] == '#') {
        while (i < file.size() && file[i] != '\n')
          ++i;
      } else {
        ++i;
      }
    }
    if (i >= file.size() || !std::isdigit(file[i])) return std::nullopt;  // stb's own check reports it
    while (i < file.size() && std::isdigit(file[i]) && field < (1ull << 40))
      field = field * 10 + (file[i++] - '0');
  }
  const unsigned long long channels = file[1] == '6' ? 3 : 1, sample_bytes = fields[2] > 255 ? 2 : 1;
  return RawSamples{i + 1, static_cast<unsigned long long>(width) * static_cast<unsigned long long>(height) *
                               channels * sample_bytes};
}

// stb reads a PGM/PPM header's numbers into an int without an overflow check (undefined behaviour
// for a 60-digit width; found by fuzzing): such headers are refused before stb sees them.
void check_pnm_header(std::span<const std::uint8_t> file, const std::filesystem::path& path) {
  if (file.size() < 2 || file[0] != 'P' || (file[1] != '5' && file[1] != '6')) return;
  constexpr unsigned long long kMaxSide = 1 << 24, kMaxValue = 65535;  // stb's own limits
  const unsigned long long limits[3] = {kMaxSide, kMaxSide, kMaxValue};
  // As stb reads it: whitespace and # comments, then digits, for each of width, height and maxval.
  // Each number is checked as far as the header goes, even when a later part of it is malformed.
  std::size_t i = 2;
  for (const unsigned long long limit : limits) {
    while (i < file.size() && (std::isspace(file[i]) || file[i] == '#')) {
      if (file[i] == '#') {
        while (i < file.size() && file[i] != '\n' && file[i] != '\r')
          ++i;
      } else {
        ++i;
      }
    }
    unsigned long long value = 0;
    while (i < file.size() && std::isdigit(file[i])) {
      value = value * 10 + (file[i++] - '0');
      if (value > limit) {
        throw Error::in_file(path, "PGM/PPM header out of range: width and height must be at most " +
                                       std::to_string(kMaxSide) + ", maxval at most " +
                                       std::to_string(kMaxValue));
      }
    }
  }
}

// A PNG's chunks must each fit in the file: stb grows its buffer to a chunk's claimed length before
// reading it, so a 300-byte file claiming a 1.4 GB IDAT chunk would cost 1.4 GB (found by fuzzing).
// And the first IDAT chunk must not be empty: stb has no buffer yet then and copies its 0 bytes to a
// null pointer (undefined behaviour, found by fuzzing: a 77-byte file).
void check_png_chunks(std::span<const std::uint8_t> file, const std::filesystem::path& path) {
  static constexpr std::uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (file.size() < 8 || !std::equal(kSignature, kSignature + 8, file.begin())) return;
  std::size_t at = 8;
  bool seen_image_data = false;
  // Every chunk header that is there counts, the last one too when its data is cut short.
  while (at + 8 <= file.size()) {
    const std::uint32_t length = (std::uint32_t{file[at]} << 24) | (std::uint32_t{file[at + 1]} << 16) |
                                 (std::uint32_t{file[at + 2]} << 8) | file[at + 3];
    if (length > file.size() - at - 8) {
      throw Error::in_file(path, "truncated or corrupt PNG: a chunk at byte " + std::to_string(at) +
                                     " claims " + std::to_string(length) + " bytes, the file has " +
                                     std::to_string(file.size() - at - 8) + " after it");
    }
    const auto type = file.begin() + static_cast<std::ptrdiff_t>(at) + 4;
    if (std::equal(type, type + 4, "IEND")) return;
    if (std::equal(type, type + 4, "IDAT")) {
      if (length == 0 && !seen_image_data) {
        throw Error::in_file(
            path, "unsupported PNG: the first IDAT chunk (at byte " + std::to_string(at) + ") is empty");
      }
      seen_image_data = true;
    }
    at += 12 + length;
  }
}

// stb_image builds a JPEG Huffman table from its 16 code counts without checking that they sum to at
// most 256, and then writes past its 257-entry array (found by fuzzing: a 12-byte file); and it decodes a
// scan with a Huffman table the file never defined, from whatever memory that table's place held
// (found by fuzzing: an index 16 MB past a 256-byte table). The tables are checked here first, walking
// the markers as stb does: fill bytes, segments by their length, and the entropy-coded data of a scan
// up to the next marker; bytes past the end read as 0, as in stb.
void check_jpeg_huffman_tables(std::span<const std::uint8_t> file, const std::filesystem::path& path) {
  const auto at = [&](std::size_t i) -> unsigned { return i < file.size() ? file[i] : 0u; };
  std::size_t p = 0;
  while (at(p) == 0xFF && p < file.size())
    ++p;                                // stb skips fill bytes before SOI too
  if (p == 0 || at(p) != 0xD8) return;  // not a JPEG
  ++p;
  bool defined[2][4] = {};  // [DC 0 or AC 1][table id]: the tables a DHT segment has given so far
  bool progressive = false;
  while (p < file.size()) {
    while (p < file.size() && at(p) != 0xFF)
      ++p;  // stb passes over bytes that are not a marker
    while (p < file.size() && at(p) == 0xFF)
      ++p;
    if (p >= file.size()) return;
    const unsigned marker = at(p++);
    if (marker == 0xD9) return;                                                            // end of image
    if ((marker >= 0xD0 && marker <= 0xD8) || marker == 0x01 || marker == 0x00) continue;  // no length
    const std::size_t length = (at(p) << 8) | at(p + 1);
    if (marker == 0xC2) progressive = true;
    if (marker == 0xDA) {
      // The tables each component of the scan decodes with, as stb uses them: a baseline scan both; a
      // progressive one its DC table in a first DC scan (a refinement reads bits alone), its AC table
      // in an AC scan.
      const std::size_t components = at(p + 2);
      const unsigned spectral_start = at(p + 3 + 2 * components);
      const unsigned successive_high = at(p + 5 + 2 * components) >> 4;
      const bool uses_dc = !progressive || (spectral_start == 0 && successive_high == 0);
      const bool uses_ac = !progressive || spectral_start != 0;
      for (std::size_t c = 0; c < components; ++c) {
        const unsigned tables = at(p + 4 + 2 * c), dc = tables >> 4, ac = tables & 15;
        for (const auto& [used, kind, id] : {std::tuple{uses_dc, 0u, dc}, std::tuple{uses_ac, 1u, ac}}) {
          if (used && id <= 3 && !defined[kind][id]) {
            throw Error::in_file(path, fmt::format("corrupt JPEG: a scan decodes with {} Huffman table {}, "
                                                   "which the file has not defined",
                                                   kind == 0 ? "DC" : "AC", id));
          }
        }
      }
    }
    if (marker == 0xC4) {
      // Tables until the declared length is used up: class/id, 16 counts, then that many values.
      long left = static_cast<long>(length) - 2;
      std::size_t q = p + 2;
      while (left > 0) {
        const unsigned kind = at(q) >> 4, id = at(q) & 15;
        if (kind <= 1 && id <= 3) defined[kind][id] = true;
        unsigned n = 0;
        for (int i = 0; i < 16; ++i)
          n += at(q + 1 + static_cast<std::size_t>(i));
        if (n > 256) {
          throw Error::in_file(path, "corrupt JPEG: a Huffman table has " + std::to_string(n) +
                                         " codes, at most 256 are possible");
        }
        q += 17 + n;
        left -= 17 + static_cast<long>(n);
      }
    }
    p += length;
    if (marker == 0xDA) {  // a scan: entropy-coded data runs to the next marker (FF 00 is a data byte)
      while (p + 1 < file.size() &&
             !(at(p) == 0xFF && at(p + 1) != 0x00 && !(at(p + 1) >= 0xD0 && at(p + 1) <= 0xD7)))
        ++p;
    }
  }
}

// ---- A photo's orientation (EXIF), through libexif, opened at the first JPEG that has EXIF data ----

// A JPEG's EXIF segment (from "Exif\0\0" on), found by walking its segments up to the first scan; empty
// when there is none (most files other than camera photos).
std::span<const std::uint8_t> jpeg_exif_segment(std::span<const std::uint8_t> file) {
  if (file.size() < 4 || file[0] != 0xFF || file[1] != 0xD8) return {};
  std::size_t p = 2;
  while (p + 4 <= file.size() && file[p] == 0xFF) {
    const unsigned marker = file[p + 1];
    if (marker == 0xDA || marker == 0xD9) break;  // the image data: no metadata segment comes after it
    const std::size_t length = (std::size_t{file[p + 2]} << 8) | file[p + 3];
    if (length < 2 || p + 2 + length > file.size()) break;
    const std::span<const std::uint8_t> payload = file.subspan(p + 4, length - 2);
    if (marker == 0xE1 && payload.size() >= 6 && std::memcmp(payload.data(), "Exif\0\0", 6) == 0)
      return payload;
    p += 2 + length;
  }
  return {};
}

struct ExifLibrary {
  decltype(&::exif_data_new_from_data) new_from_data = nullptr;
  decltype(&::exif_data_unref) unref = nullptr;
  decltype(&::exif_data_get_byte_order) byte_order = nullptr;
  decltype(&::exif_content_get_entry) get_entry = nullptr;
  decltype(&::exif_get_short) get_short = nullptr;
};

ExifLibrary open_libexif() {
  const SharedLibrary library("SOFTREG_LIBEXIF", "libexif.so.12", "read a photo's orientation (EXIF)",
                              "install libexif12 (scripts/setup does)");
  ExifLibrary exif;
  library.resolve("exif_data_new_from_data", exif.new_from_data, "is it libexif 0.6?");
  library.resolve("exif_data_unref", exif.unref, "is it libexif 0.6?");
  library.resolve("exif_data_get_byte_order", exif.byte_order, "is it libexif 0.6?");
  library.resolve("exif_content_get_entry", exif.get_entry, "is it libexif 0.6?");
  library.resolve("exif_get_short", exif.get_short, "is it libexif 0.6?");
  return exif;
}

const ExifLibrary& libexif() {
  static const ExifLibrary exif = open_libexif();  // a failed load is tried again next time
  return exif;
}

// The EXIF orientation of a JPEG photo (1 to 8; 1, upright, when it has none): how a camera held on its
// side stored the picture. Phones save portrait photos as landscape pixels with orientation 6.
int exif_orientation(std::span<const std::uint8_t> file) {
  const std::span<const std::uint8_t> segment = jpeg_exif_segment(file);
  if (segment.empty()) return 1;
  const ExifLibrary& exif = libexif();
  std::unique_ptr<ExifData, decltype(exif.unref)> data(
      exif.new_from_data(segment.data(), static_cast<unsigned>(segment.size())), exif.unref);
  if (!data) return 1;
  const ExifEntry* entry = exif.get_entry(data->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
  if (!entry || entry->format != EXIF_FORMAT_SHORT || entry->components < 1 || entry->size < 2) return 1;
  const int orientation = exif.get_short(entry->data, exif.byte_order(data.get()));
  return orientation >= 1 && orientation <= 8 ? orientation : 1;
}

// The image as it is meant to be seen: turned and mirrored as its EXIF orientation says.
GrayImage upright(GrayImage image, int orientation) {
  if (orientation == 1) return image;
  const int w = image.width, h = image.height;
  const bool swaps = orientation >= 5;  // 5 to 8 turn the picture a quarter: width and height swap
  GrayImage out;
  out.width = swaps ? h : w;
  out.height = swaps ? w : h;
  out.pixels.resize(image.pixels.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;  // the source pixel of output (x, y)
      switch (orientation) {
        case 2:  // mirrored left to right
          sx = w - 1 - x;
          break;
        case 3:  // upside down
          sx = w - 1 - x;
          sy = h - 1 - y;
          break;
        case 4:  // mirrored top to bottom
          sy = h - 1 - y;
          break;
        case 5:  // transposed
          sx = y;
          sy = x;
          break;
        case 6:  // stored a quarter turn counter-clockwise: turned clockwise to be seen
          sx = y;
          sy = h - 1 - x;
          break;
        case 7:  // transversed
          sx = w - 1 - y;
          sy = h - 1 - x;
          break;
        case 8:  // stored a quarter turn clockwise: turned counter-clockwise to be seen
          sx = w - 1 - y;
          sy = x;
          break;
        default:
          break;
      }
      out.pixels[static_cast<std::size_t>(y) * static_cast<std::size_t>(out.width) +
                 static_cast<std::size_t>(x)] =
          image.pixels[static_cast<std::size_t>(sy) * static_cast<std::size_t>(w) +
                       static_cast<std::size_t>(sx)];
    }
  }
  return out;
}

// ---- WebP, through libwebp, opened at the first WebP image ----

bool is_webp(std::span<const std::uint8_t> file) {
  return file.size() >= 12 && std::memcmp(file.data(), "RIFF", 4) == 0 &&
         std::memcmp(file.data() + 8, "WEBP", 4) == 0;
}

struct WebpLibrary {
  decltype(&::WebPGetInfo) get_info = nullptr;
  decltype(&::WebPDecodeRGBA) decode_rgba = nullptr;
  decltype(&::WebPFree) free = nullptr;
};

WebpLibrary open_libwebp() {
  // libwebp's soname since 1.0 (2018); SOFTREG_LIBWEBP names another build.
  const SharedLibrary library("SOFTREG_LIBWEBP", "libwebp.so.7", "read WebP images",
                              "install libwebp7 (scripts/setup does), or convert the images to PNG");
  WebpLibrary webp;
  library.resolve("WebPGetInfo", webp.get_info, "is it libwebp 1.0 or later?");
  library.resolve("WebPDecodeRGBA", webp.decode_rgba, "is it libwebp 1.0 or later?");
  library.resolve("WebPFree", webp.free, "is it libwebp 1.0 or later?");
  return webp;
}

const WebpLibrary& libwebp() {
  static const WebpLibrary webp = open_libwebp();  // a failed load is tried again next time
  return webp;
}

// The name of an image format that neither stb nor libwebp reads, from the file's first bytes: the
// error then says what the file is instead of "unknown image type".
const char* unread_format(std::span<const std::uint8_t> file) {
  const auto starts = [&](std::size_t at, std::string_view bytes) {
    return file.size() >= at + bytes.size() && std::memcmp(file.data() + at, bytes.data(), bytes.size()) == 0;
  };
  if (starts(0, std::string_view("II*\0", 4)) || starts(0, std::string_view("MM\0*", 4))) return "TIFF";
  if (starts(0, "\xFF\x0A") || starts(0, std::string_view("\0\0\0\x0CJXL ", 8))) return "JPEG XL";
  if (starts(4, "ftyp")) {
    if (starts(8, "avif") || starts(8, "avis")) return "AVIF";
    for (const char* brand : {"heic", "heix", "hevc", "heim", "heis", "mif1", "msf1"}) {
      if (starts(8, brand)) return "HEIF (HEIC)";
    }
  }
  return nullptr;
}

struct ImageHeader {
  int width, height, channels;
};

// What stbi_info says of a file's bytes, after the checks that keep stb's header parsers from undefined
// behaviour (stbi_info parses JPEG tables and PGM/PPM headers too). Every read of an image goes here.
ImageHeader read_checked_header(std::span<const std::uint8_t> file, const std::filesystem::path& path) {
  if (file.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw Error::in_file(path, "is larger than 2 GB, too large for an image");
  check_pnm_header(file, path);
  check_png_chunks(file, path);
  check_jpeg_huffman_tables(file, path);
  if (is_webp(file)) {
    ImageHeader header{0, 0, 4};  // decoded as RGBA
    if (!libwebp().get_info(file.data(), file.size(), &header.width, &header.height))
      throw Error::in_file(path, "cannot read as an image (a damaged WebP header)");
    return header;
  }
  ImageHeader header{0, 0, 0};
  if (!stbi_info_from_memory(file.data(), static_cast<int>(file.size()), &header.width, &header.height,
                             &header.channels)) {
    if (const char* format = unread_format(file)) {
      throw Error::in_file(path,
                           fmt::format("is a {} image, which softreg does not read (PNG, JPEG, WebP, GIF, "
                                       "BMP, TGA and PNM it does): convert it",
                                       format));
    }
    const char* reason = stbi_failure_reason();
    throw Error::in_file(
        path, std::string("cannot read as an image (") + (reason ? reason : "unknown format") + ")");
  }
  return header;
}

// For each output index along one axis: the source indices it covers and their weights (summing to 1).
struct Tap {
  int source;
  double weight;
};
std::vector<std::vector<Tap>> area_taps(int source_size, int output_size) {
  std::vector<std::vector<Tap>> taps(static_cast<std::size_t>(output_size));
  const double scale = static_cast<double>(source_size) / output_size;
  for (int o = 0; o < output_size; ++o) {
    const double lo = o * scale, hi = (o + 1) * scale;
    for (int s = static_cast<int>(std::floor(lo)); s < std::min(source_size, static_cast<int>(std::ceil(hi)));
         ++s) {
      const double overlap = std::min(hi, s + 1.0) - std::max(lo, static_cast<double>(s));
      if (overlap > 0) taps[static_cast<std::size_t>(o)].push_back({s, overlap / scale});
    }
  }
  return taps;
}

}  // namespace

std::optional<std::pair<int, int>> image_dimensions(const std::filesystem::path& path) {
  // From the file's bytes through the same checks as a decode: stbi_info on the path would parse the
  // headers unchecked (a JPEG Huffman table past 256 codes overran stb's array there; found by fuzzing
  // an image folder, whose sizes are read this way before anything is decoded).
  try {
    const std::vector<std::uint8_t> file = read_file_bytes(path);
    const ImageHeader header = read_checked_header(file, path);
    // A photo turned a quarter by its orientation is seen, and so resized, with its sides swapped.
    if (exif_orientation(file) >= 5) return std::pair{header.height, header.width};
    return std::pair{header.width, header.height};
  } catch (const Error&) {
    return std::nullopt;  // the decode reports it
  }
}

GrayImage read_gray_image(const std::filesystem::path& path, const DecodeOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error::in_file(path, "is a directory, expected an image file");
  return decode_gray_image(read_file_bytes(path), path.string(), options);
}

GrayImage decode_gray_image(std::span<const std::uint8_t> file, const std::string& source,
                            const DecodeOptions& options) {
  const std::filesystem::path path = source;
  const ImageHeader header = read_checked_header(file, path);
  const auto size = static_cast<int>(file.size());
  int width = header.width, height = header.height, channels = header.channels;
  const long long pixels = static_cast<long long>(width) * height;
  const std::string dims = std::to_string(width) + "x" + std::to_string(height);
  if (pixels > kMaxImagePixels)
    throw Error::in_file(path, "image is " + dims + ", larger than the 100-megapixel limit");
  // Checked before decoding: the header's size must fit in the file, so a few bytes cannot cost gigabytes.
  if (const std::optional<RawSamples> raw = pnm_samples(file, width, height)) {
    const unsigned long long present = file.size() > raw->offset ? file.size() - raw->offset : 0;
    if (present < raw->bytes) {
      throw Error::in_file(path, "truncated: the header says " + dims + " pixels (" +
                                     std::to_string(raw->bytes) + " bytes of samples), the file has " +
                                     std::to_string(present));
    }
  } else if (pixels > static_cast<long long>(file.size()) * kMaxPixelsPerFileByte) {
    throw Error::in_file(path, "the header claims " + dims + " pixels, more than a " +
                                   std::to_string(file.size()) + "-byte file can hold");
  }
  // A side of 0 decodes to nothing, and resizing a very tall or wide one needs an intermediate row per
  // source line: 28 x 6.5 million doubles for a 0 x 6,553,515 PPM (found by fuzzing).
  if (width < 1 || height < 1) throw Error::in_file(path, "image is " + dims + ": it has no pixels");
  // (The default limit lets a 65,536 x 1,500 panorama through; a 1 x 100-million line is refused.)
  const int max_side = std::min(options.max_side, kMaxImageSide);
  if (width > max_side || height > max_side) {
    throw Error::in_file(path, "image is " + dims + "; each side may be at most " + std::to_string(max_side));
  }
  // The image's own channels, converted to grey here: stb's conversion of a 16-bit PPM to one
  // channel overruns its buffer (found by fuzzing; the 16-bit PPM regression test), and its formula for
  // the others is the one below.
  const bool webp = is_webp(file);
  std::unique_ptr<unsigned char, void (*)(void*)> data(
      webp ? libwebp().decode_rgba(file.data(), file.size(), &width, &height)
           : stbi_load_from_memory(file.data(), size, &width, &height, &channels, 0),
      webp ? libwebp().free : stbi_image_free);
  if (!data) {
    const char* reason = webp ? "a damaged WebP image" : stbi_failure_reason();
    throw Error::in_file(path,
                         std::string("cannot decode image (") + (reason ? reason : "unknown error") + ")");
  }

  GrayImage image;
  image.width = width;
  image.height = height;
  const std::size_t n = static_cast<std::size_t>(width) * static_cast<std::size_t>(height);
  image.pixels.resize(n);
  const unsigned char* p = data.get();
  const auto c = static_cast<std::size_t>(channels);
  const unsigned background = options.background;
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char* px = p + i * c;
    // stb's luminance (stbi__compute_y) for colour; grey as it is.
    const unsigned grey = c >= 3 ? (px[0] * 77u + px[1] * 150u + px[2] * 29u) >> 8 : px[0];
    // Grey + alpha (2 channels) or RGBA (4): "over" the background, rounded to the nearest grey.
    const bool has_alpha = c == 2 || c == 4;
    const unsigned alpha = has_alpha ? px[c - 1] : 255u;
    image.pixels[i] = static_cast<std::uint8_t>((grey * alpha + background * (255u - alpha) + 127u) / 255u);
  }
  return upright(std::move(image), exif_orientation(file));
}

GrayImage resize_area(const GrayImage& image, int width, int height) {
  const auto x_taps = area_taps(image.width, width);
  const auto y_taps = area_taps(image.height, height);
  // Separable: average along x for every source row, then along y.
  std::vector<double> rows(static_cast<std::size_t>(image.height) * static_cast<std::size_t>(width));
  for (int y = 0; y < image.height; ++y) {
    const std::uint8_t* src =
        image.pixels.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(image.width);
    for (int x = 0; x < width; ++x) {
      double sum = 0;
      for (const Tap& t : x_taps[static_cast<std::size_t>(x)])
        sum += t.weight * src[t.source];
      rows[static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)] = sum;
    }
  }
  GrayImage out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height));
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      double sum = 0;
      for (const Tap& t : y_taps[static_cast<std::size_t>(y)]) {
        sum += t.weight * rows[static_cast<std::size_t>(t.source) * static_cast<std::size_t>(width) +
                               static_cast<std::size_t>(x)];
      }
      out.pixels[static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
                 static_cast<std::size_t>(x)] =
          static_cast<std::uint8_t>(std::clamp(std::lround(sum), 0L, 255L));
    }
  }
  return out;
}

void invert(GrayImage& image) {
  for (auto& p : image.pixels)
    p = static_cast<std::uint8_t>(255 - p);
}

}  // namespace softreg
