// Helpers for building softreg::Error messages.
#include "softreg/error.hpp"

namespace softreg {

Error Error::in_file(const std::filesystem::path& path, const std::string& what) {
  return Error(path.string() + ": " + what);
}

}  // namespace softreg
