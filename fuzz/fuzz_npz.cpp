// .npz archives (zip, through libzip): entries, their sizes, and the .npy arrays inside. libzip reads a
// file, so each input is written to one first.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "scratch_path.hpp"
#include "softreg/error.hpp"
#include "softreg/sources.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ScratchPath scratch("softreg-fuzz-npz-", ".npz");
  static const std::string path = scratch.path().string();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    for (const auto& [name, array] : softreg::read_npz_file(path)) {
      if (array.shape.size() == 2) softreg::features_from_npy(array, name);
    }
  } catch (const softreg::Error&) {
  }
  return 0;
}
