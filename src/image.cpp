// Image decoding with stb_image (Debian's libstb) and area-averaging resize.
#include "softreg/image.hpp"

#include <stb_image.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "softreg/error.hpp"

namespace softreg {
namespace {

// Larger images than this are refused rather than decoded: no picture of one garment needs 100 MP.
constexpr long long kMaxImagePixels = 100'000'000;

struct StbiDeleter {
  void operator()(unsigned char* p) const { stbi_image_free(p); }
};

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

GrayImage read_gray_image(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error::in_file(path, "is a directory, expected an image file");
  int width = 0, height = 0, channels = 0;
  if (!stbi_info(path.c_str(), &width, &height, &channels)) {
    const char* reason = stbi_failure_reason();
    throw Error::in_file(
        path, std::string("cannot read as an image (") + (reason ? reason : "unknown format") + ")");
  }
  if (static_cast<long long>(width) * height > kMaxImagePixels) {
    throw Error::in_file(path, "image is " + std::to_string(width) + "x" + std::to_string(height) +
                                   ", larger than the 100-megapixel limit");
  }
  // Asking for one channel makes stb convert colour to luminance (and drop any alpha).
  std::unique_ptr<unsigned char, StbiDeleter> data(stbi_load(path.c_str(), &width, &height, &channels, 1));
  if (!data) {
    const char* reason = stbi_failure_reason();
    throw Error::in_file(path,
                         std::string("cannot decode image (") + (reason ? reason : "unknown error") + ")");
  }
  GrayImage image;
  image.width = width;
  image.height = height;
  image.pixels.assign(data.get(),
                      data.get() + static_cast<std::size_t>(width) * static_cast<std::size_t>(height));
  return image;
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
