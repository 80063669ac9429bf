// IDX files, raw or gzip-compressed: the header checks and the whole-buffer gzip decoder.
#include <cstddef>
#include <cstdint>
#include <span>

#include "softreg/error.hpp"
#include "softreg/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  try {
    if (softreg::is_gzip(bytes)) {
      const std::vector<std::uint8_t> raw = softreg::gunzip(bytes, "fuzz");
      softreg::parse_idx(raw, 2051, "fuzz");
    } else {
      softreg::parse_idx(bytes, size > 3 && data[3] == 1 ? 2049 : 2051, "fuzz");
    }
  } catch (const softreg::Error&) {
  }
  return 0;
}
