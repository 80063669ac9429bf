// PNG encoding of the pictures cairo draws (png.cpp says how and why not cairo's own writer).
#pragma once

#include <optional>
#include <string>

namespace softreg::plot {

/// The PNG file (8-bit RGB) of `height` rows of cairo RGB24 pixels (`stride` bytes apart), or nothing
/// when memory for it could not be had.
std::optional<std::string> encode_png_rgb24(const unsigned char* pixels, int width, int height, int stride);

}  // namespace softreg::plot
