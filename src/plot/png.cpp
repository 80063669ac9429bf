// PNG files from cairo's pixels: stb_image_write's writer (libstb-dev) with libdeflate as its zlib
// compressor, rows unfiltered: two fifths of the time of cairo's libpng writer, which was 60 % of
// `softreg plot` (BENCHMARKS.md). The charts' flat colours and upscaled pixels deflate well without a
// filter, and stb's per-row filter choice cost more than the compression itself.
#include "plot/png.hpp"

#include <libdeflate.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace softreg::plot {
namespace {

// stb_image_write's zlib hook: a malloc'd zlib stream of data at `level` (stb frees it), or null.
unsigned char* zlib_compress(unsigned char* data, int length, int* out_length, int level) {
  libdeflate_compressor* compressor = libdeflate_alloc_compressor(level);
  if (!compressor) return nullptr;
  const std::size_t bound = libdeflate_zlib_compress_bound(compressor, static_cast<std::size_t>(length));
  auto* out = static_cast<unsigned char*>(std::malloc(bound));
  std::size_t written = 0;
  if (out) written = libdeflate_zlib_compress(compressor, data, static_cast<std::size_t>(length), out, bound);
  libdeflate_free_compressor(compressor);
  if (written == 0) {
    std::free(out);
    return nullptr;
  }
  *out_length = static_cast<int>(written);
  return out;
}

}  // namespace
}  // namespace softreg::plot

// The writer's functions and settings stay private to this file (STB_IMAGE_WRITE_STATIC), apart from
// Debian's prebuilt libstb, whose writer has stb's own compressor.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBIW_ZLIB_COMPRESS softreg::plot::zlib_compress
#include <stb_image_write.h>

namespace softreg::plot {
namespace {

// The writer reads its settings from these file-level variables; set once, before any thread draws.
const bool kWriterSettings = [] {
  stbi_write_force_png_filter = 0;       // no filter
  stbi_write_png_compression_level = 6;  // libdeflate's level (its default)
  return true;
}();

void append(void* closure, void* data, int size) {
  static_cast<std::string*>(closure)->append(static_cast<const char*>(data), static_cast<std::size_t>(size));
}

}  // namespace

std::optional<std::string> encode_png_rgb24(const unsigned char* pixels, int width, int height, int stride) {
  (void)kWriterSettings;
  // cairo's RGB24 pixel is a native 32-bit 0x..RRGGBB; PNG wants the bytes R, G, B.
  std::vector<unsigned char> rgb(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
  unsigned char* out = rgb.data();
  for (int y = 0; y < height; ++y) {
    const unsigned char* row = pixels + static_cast<std::ptrdiff_t>(y) * stride;
    for (int x = 0; x < width; ++x) {
      std::uint32_t pixel;
      std::memcpy(&pixel, row + 4 * static_cast<std::ptrdiff_t>(x), sizeof pixel);
      *out++ = static_cast<unsigned char>(pixel >> 16);
      *out++ = static_cast<unsigned char>(pixel >> 8);
      *out++ = static_cast<unsigned char>(pixel);
    }
  }
  std::string png;
  if (!stbi_write_png_to_func(append, &png, width, height, 3, rgb.data(), width * 3)) return std::nullopt;
  return png;
}

}  // namespace softreg::plot
