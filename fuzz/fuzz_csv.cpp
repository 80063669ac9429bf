// CSV tables: quoting, header detection, the label column, numbers and ragged rows.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "softreg/error.hpp"
#include "softreg/sources.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The first byte picks the label column: the first one, one by index, or one by name.
  const char* columns[] = {"", "1", "label"};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    softreg::parse_csv(text.substr(size > 0 ? 1 : 0), "fuzz", columns[size > 0 ? data[0] % 3 : 0]);
  } catch (const softreg::Error&) {
  }
  return 0;
}
