// Opens libcairo.so.2 on the first picture (cairo_library.hpp says why).
#include "plot/cairo_library.hpp"

#include "shared_library.hpp"

namespace softreg::plot {
namespace {

// cairo's soname since 1.0 (2005); SOFTREG_LIBCAIRO names another build of it.
constexpr const char* kCairoLibraryName = "libcairo.so.2";

CairoLibrary open_cairo() {
  const SharedLibrary library("SOFTREG_LIBCAIRO", kCairoLibraryName, "draw pictures",
                              "install libcairo2 (scripts/setup does), or pass --no-plots");
  CairoLibrary cairo;
#define SOFTREG_CAIRO_RESOLVE(function) \
  library.resolve("cairo_" #function, cairo.function, "is it cairo 1.10 or later?");
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
