// Model files (safetensors): header length, JSON, dtypes, shapes, offsets and softreg's metadata.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "softreg/error.hpp"
#include "softreg/model_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const softreg::ModelFile file =
        softreg::parse_model(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
    // What a loaded model is used for: its recipe and state, and writing it back.
    if (file.metadata.contains("lr")) {
      softreg::config_from_metadata(file, "fuzz");
      softreg::trainer_state_from(file, "fuzz");
    }
    softreg::serialize_model(file);
  } catch (const softreg::Error&) {
  }
  return 0;
}
