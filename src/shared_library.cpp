// Opening a shared library at first use (shared_library.hpp).
#include "shared_library.hpp"

#include <cstdlib>

namespace softreg {

SharedLibrary::SharedLibrary(const char* env_variable, const char* soname, std::string_view purpose,
                             std::string_view hint) {
  const char* env = std::getenv(env_variable);
  name_ = env && *env ? env : soname;
  handle_ = ::dlopen(name_.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    const char* why = ::dlerror();
    throw Error(fmt::format("cannot load {} to {} ({}); {}", name_, purpose, why ? why : "not found", hint));
  }
}

}  // namespace softreg
