// CSV tables: quoting, header detection, the label column, numbers, ragged rows, runs on two threads.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "softreg/error.hpp"
#include "softreg/sources.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The first byte picks the label column (the first one, one by index, or one by name) and whether
  // two threads parse runs of lines (tables of more than 4,096 lines).
  const char* columns[] = {"", "1", "label"};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    softreg::parse_csv(text.substr(size > 0 ? 1 : 0), "fuzz", columns[size > 0 ? data[0] % 3 : 0],
                       size > 0 && (data[0] & 0x80) != 0 ? 2 : 1);
  } catch (const softreg::Error&) {
  }
  return 0;
}
