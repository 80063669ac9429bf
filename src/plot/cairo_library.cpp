// Opens libcairo.so.2 on the first picture (cairo_library.hpp says why).
#include "plot/cairo_library.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include "softreg/error.hpp"

namespace softreg::plot {
namespace {

constexpr const char* kCairoLibraryName = "libcairo.so.2";  // cairo's soname since 1.0 (2005)

CairoLibrary open_cairo() {
  // Never closed: cairo keeps caches (fonts, patterns) for the life of the process.
  void* library = ::dlopen(kCairoLibraryName, RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char* why = ::dlerror();
    throw Error(
        fmt::format("cannot load {} to draw pictures ({}); install libcairo2 (scripts/setup does), "
                    "or pass --no-plots",
                    kCairoLibraryName, why ? why : "not found"));
  }
  CairoLibrary cairo;
#define SOFTREG_CAIRO_RESOLVE(name)                                                      \
  cairo.name = reinterpret_cast<decltype(cairo.name)>(::dlsym(library, "cairo_" #name)); \
  if (!cairo.name)                                                                       \
    throw Error(fmt::format("{} has no cairo_{}: cairo 1.10 or later is needed", kCairoLibraryName, #name));
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
