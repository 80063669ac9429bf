// A shared library opened when first needed instead of linked, so that commands which never use it
// do not pay for loading it (and what it loads) at every start: libcurl for downloads, cairo for
// pictures (BENCHMARKS.md, process start).
#pragma once

#include <dlfcn.h>
#include <fmt/format.h>

#include <string>
#include <string_view>

#include "softreg/error.hpp"

namespace softreg {

class SharedLibrary {
 public:
  /// Opens `soname`, or the library `env_variable` names when it is set (a path or another soname).
  /// Throws Error: "cannot load NAME to PURPOSE (why); HINT".
  SharedLibrary(const char* env_variable, const char* soname, std::string_view purpose,
                std::string_view hint);

  /// Looks up `symbol` into `function`; throws Error: "NAME has no SYMBOL: EXPECTED".
  template <class Function>
  void resolve(const char* symbol, Function& function, std::string_view expected) const {
    function = reinterpret_cast<Function>(::dlsym(handle_, symbol));
    if (!function) throw Error(fmt::format("{} has no {}: {}", name_, symbol, expected));
  }

 private:
  std::string name_;
  void* handle_ = nullptr;  // never closed: the libraries keep global state for the life of the process
};

}  // namespace softreg
