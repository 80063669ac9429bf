// User images (PNG, JPEG, BMP, PGM/PPM, GIF, TGA through stb_image, compiled into this target with the
// sanitizers), then the resize every prediction does.
#include <cstddef>
#include <cstdint>
#include <span>

#include "softreg/error.hpp"
#include "softreg/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    softreg::GrayImage image = softreg::decode_gray_image(std::span<const std::uint8_t>(data, size), "fuzz");
    softreg::resize_area(image, 28, 28);
    softreg::invert(image);
  } catch (const softreg::Error&) {
  }
  return 0;
}
