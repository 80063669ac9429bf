// Image folders: the input is a little archive of files (class, split, name and bytes for each) laid
// out as root/train/<class>/<name>, root/test/<class>/<name> and root/val/<class>/<name>, then scanned,
// decoded and resized as `softreg train --data root` does (without the decoded cache).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "scratch_path.hpp"
#include "softreg/error.hpp"
#include "softreg/sources.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ScratchPath scratch("softreg-fuzz-folder-");
  const fs::path& root = scratch.path();
  std::error_code ec;
  fs::remove_all(root, ec);
  // Records: [class 0-3 | test bit 0x80 | skip-bad bit 0x40 | val bit 0x20] [length: 2 bytes] [bytes],
  // at most 16.
  std::size_t at = 0;
  bool skip_bad = false;
  for (int n = 0; n < 16 && at + 3 <= size; ++n) {
    const std::uint8_t tag = data[at];
    const std::size_t length = std::min<std::size_t>(size - at - 3, data[at + 1] | (data[at + 2] << 8));
    skip_bad = skip_bad || (tag & 0x40);
    const char* split = (tag & 0x80) ? "test" : (tag & 0x20) ? "val" : "train";
    const fs::path folder = root / split / ("class" + std::to_string(tag & 3));
    fs::create_directories(folder, ec);
    std::ofstream(folder / ("image" + std::to_string(n) + ".png"), std::ios::binary)
        .write(reinterpret_cast<const char*>(data + at + 3), static_cast<std::streamsize>(length));
    at += 3 + length;
  }
  try {
    if (softreg::is_image_folder(root)) {
      softreg::load_image_folder(
          root, {.height = 0, .width = 0, .skip_bad_images = skip_bad, .threads = 1, .use_cache = false});
    }
  } catch (const softreg::Error&) {
  }
  fs::remove_all(root, ec);
  return 0;
}
