// cairo, opened when the first picture is drawn instead of linked: with the X11, fontconfig and
// freetype libraries it brings it cost every softreg process about 1 ms at exec (BENCHMARKS.md), and
// most commands (eval, predict, bench, train --no-plots) draw nothing. The headers still give the
// types and constants; cairo() gives the functions the charts call.
#pragma once

#include <cairo-svg.h>
#include <cairo.h>

namespace softreg::plot {

// Every cairo function charts.cpp calls, without its cairo_ prefix.
#define SOFTREG_CAIRO_FUNCTIONS(X) \
  X(arc)                           \
  X(clip)                          \
  X(create)                        \
  X(destroy)                       \
  X(fill)                          \
  X(fill_preserve)                 \
  X(font_extents)                  \
  X(get_source)                    \
  X(image_surface_create)          \
  X(image_surface_get_data)        \
  X(image_surface_get_stride)      \
  X(line_to)                       \
  X(move_to)                       \
  X(paint)                         \
  X(pattern_set_filter)            \
  X(rectangle)                     \
  X(restore)                       \
  X(rotate)                        \
  X(save)                          \
  X(scale)                         \
  X(select_font_face)              \
  X(set_dash)                      \
  X(set_font_size)                 \
  X(set_line_width)                \
  X(set_source_rgb)                \
  X(set_source_rgba)               \
  X(set_source_surface)            \
  X(show_text)                     \
  X(status)                        \
  X(status_to_string)              \
  X(stroke)                        \
  X(surface_destroy)               \
  X(surface_finish)                \
  X(surface_flush)                 \
  X(surface_mark_dirty)            \
  X(surface_status)                \
  X(svg_surface_create_for_stream) \
  X(text_extents)                  \
  X(translate)

struct CairoLibrary {
#define SOFTREG_CAIRO_POINTER(name) decltype(&::cairo_##name) name = nullptr;
  SOFTREG_CAIRO_FUNCTIONS(SOFTREG_CAIRO_POINTER)
#undef SOFTREG_CAIRO_POINTER
};

/// libcairo.so.2's functions, loaded on the first call; throws softreg::Error naming the library
/// when it cannot be loaded.
const CairoLibrary& cairo();

}  // namespace softreg::plot
