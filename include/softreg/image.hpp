// User images for prediction: decoding (PNG, JPEG, BMP, PGM/PPM, GIF, TGA via stb_image), conversion to
// grayscale and resizing by area averaging to the model's input size.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace softreg {

struct GrayImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;  // row-major, width * height
};

/// The longest side decode_gray_image accepts unless told otherwise.
inline constexpr int kMaxImageSide = 65536;

struct DecodeOptions {
  /// The grey that transparent pixels are composited onto (alpha blending): black, the background of
  /// Fashion-MNIST, or white for a dark object that will be inverted.
  std::uint8_t background = 0;
  /// Images with a longer side are refused before their pixels are decoded.
  int max_side = kMaxImageSide;
};

/// Decodes an image file of any size and colour into 8-bit grayscale, compositing any alpha channel
/// onto options.background. Errors name the file.
GrayImage read_gray_image(const std::filesystem::path& path, const DecodeOptions& options = {});
/// The same for an image file's bytes in memory; `source` names it in messages.
GrayImage decode_gray_image(std::span<const std::uint8_t> file, const std::string& source,
                            const DecodeOptions& options = {});

/// The width and height an image file's header claims, without decoding it; nullopt if it is not an
/// image stb can read.
std::optional<std::pair<int, int>> image_dimensions(const std::filesystem::path& path);

/// Resizes by area averaging: each output pixel is the mean of the source area it covers (partial
/// pixels weighted by their overlap), rounded to the nearest byte.
GrayImage resize_area(const GrayImage& image, int width, int height);

/// 255 - pixel, for dark objects on a light background (Fashion-MNIST is a light object on black).
void invert(GrayImage& image);

}  // namespace softreg
