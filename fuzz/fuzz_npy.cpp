// NumPy .npy arrays: magic, header dictionary, dtype, shape against the body, then their use as
// feature rows or labels.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "softreg/error.hpp"
#include "softreg/sources.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const softreg::NpyArray array =
        softreg::parse_npy(softreg::Bytes(std::vector<std::uint8_t>(data, data + size)), "fuzz");
    if (array.shape.size() == 2) {
      softreg::features_from_npy(array, "fuzz");
    } else {
      softreg::labels_from_npy(array, "fuzz");
    }
  } catch (const softreg::Error&) {
  }
  return 0;
}
