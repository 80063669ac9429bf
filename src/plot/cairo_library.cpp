// Opens libcairo.so.2 on the first picture (cairo_library.hpp says why).
#include "plot/cairo_library.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdlib>
#include <string>

#include "softreg/error.hpp"

namespace softreg::plot {
namespace {

constexpr const char* kCairoLibraryName = "libcairo.so.2";  // cairo's soname since 1.0 (2005)

CairoLibrary open_cairo() {
  // SOFTREG_LIBCAIRO names another build of it (a path or a soname).
  const char* env = std::getenv("SOFTREG_LIBCAIRO");
  const std::string name = env && *env ? env : kCairoLibraryName;
  // Never closed: cairo keeps caches (fonts, patterns) for the life of the process.
  void* library = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char* why = ::dlerror();
    throw Error(
        fmt::format("cannot load {} to draw pictures ({}); install libcairo2 (scripts/setup does), "
                    "or pass --no-plots",
                    name, why ? why : "not found"));
  }
  CairoLibrary cairo;
#define SOFTREG_CAIRO_RESOLVE(function)                                                              \
  cairo.function = reinterpret_cast<decltype(cairo.function)>(::dlsym(library, "cairo_" #function)); \
  if (!cairo.function)                                                                               \
    throw Error(fmt::format("{} has no cairo_{}: is it cairo 1.10 or later?", name, #function));
  SOFTREG_CAIRO_FUNCTIONS(SOFTREG_CAIRO_RESOLVE)
#undef SOFTREG_CAIRO_RESOLVE
  return cairo;
}

}  // namespace

const CairoLibrary& cairo() {
  static const CairoLibrary library = open_cairo();  // a failed load is tried again next time
  return library;
}

}  // namespace softreg::plot
