// CSV tables: quoting, header detection, the label column, columns left unread, numbers, ragged rows,
// runs on two threads.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "softreg/error.hpp"
#include "softreg/sources.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The first byte picks the label column (the first one, one by index, or one by name), whether
  // two threads parse runs of lines (tables of more than 4,096 lines) and whether columns are left unread
  // (one by name, one by index from the end).
  const char* columns[] = {"", "1", "label"};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string> ignored =
      size > 0 && (data[0] & 0x40) != 0 ? std::vector<std::string>{"x", "-1"} : std::vector<std::string>{};
  try {
    softreg::parse_csv(text.substr(size > 0 ? 1 : 0), "fuzz", columns[size > 0 ? data[0] % 3 : 0],
                       size > 0 && (data[0] & 0x80) != 0 ? 2 : 1, {}, ignored);
  } catch (const softreg::Error&) {
  }
  return 0;
}
