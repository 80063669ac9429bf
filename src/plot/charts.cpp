// Drawing the pictures with cairo. Everything is rendered into memory and then written with
// write_file_atomic, so an image viewer open on a file never sees half of it.
#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>

#include "plot/cairo_library.hpp"
#include "plot/png.hpp"
#include "softreg/error.hpp"
#include "softreg/io.hpp"
#include "softreg/plot.hpp"

namespace softreg::plot {
namespace {

constexpr const char* kFontFamily = "DejaVu Sans";  // fonts-dejavu-core, installed by scripts/setup

struct Color {
  double r, g, b;
};
// The seed's Animator styles: '-' (matplotlib's first colour), 'm--', 'g-.'.
constexpr Color kSeriesColors[] = {
    {0.122, 0.467, 0.706}, {0.75, 0.0, 0.75}, {0.0, 0.5, 0.0}, {0.84, 0.15, 0.16}};
constexpr Color kWrong = {0.84, 0.1, 0.1};
constexpr Color kText = {0.1, 0.1, 0.1};
constexpr Color kGrid = {0.88, 0.88, 0.88};

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo().surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo().destroy(c); }
};
using Surface = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using Context = std::unique_ptr<cairo_t, ContextDeleter>;

cairo_status_t append_to_string(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

void check(cairo_status_t status, const std::filesystem::path& path) {
  if (status != CAIRO_STATUS_SUCCESS)
    throw Error::in_file(path, std::string("drawing failed: ") + cairo().status_to_string(status));
}

// Paints the surface white and renders `draw(cr)` on it.
template <class Draw>
void render(cairo_surface_t* surface, const std::filesystem::path& path, Draw&& draw) {
  check(cairo().surface_status(surface), path);
  Context cr(cairo().create(surface));
  cairo().set_source_rgb(cr.get(), 1, 1, 1);
  cairo().paint(cr.get());
  draw(cr.get());
  check(cairo().status(cr.get()), path);
}

// Before the surface is made: stb_image_write counts a PNG's filtered rows' bytes in an int.
void check_png_size(int width, int height, const std::filesystem::path& path) {
  if ((3 * static_cast<std::int64_t>(width) + 1) * height > std::numeric_limits<int>::max()) {
    throw Error::in_file(path, fmt::format("a {}x{} picture is too large to write as a PNG", width, height));
  }
}

// The PNG file of an RGB24 image surface of w x h pixels.
std::string png_bytes(cairo_surface_t* surface, int width, int height, const std::filesystem::path& path) {
  cairo().surface_flush(surface);
  std::optional<std::string> png = encode_png_rgb24(cairo().image_surface_get_data(surface), width, height,
                                                    cairo().image_surface_get_stride(surface));
  if (!png) throw Error::in_file(path, "drawing failed: out of memory encoding the PNG");
  return std::move(*png);
}

// Renders on a w x h canvas and writes the PNG atomically.
template <class Draw>
void write_png(const std::filesystem::path& path, int width, int height, Draw&& draw) {
  check_png_size(width, height, path);
  Surface surface(cairo().image_surface_create(CAIRO_FORMAT_RGB24, width, height));
  render(surface.get(), path, draw);
  write_file_atomic(path, png_bytes(surface.get(), width, height, path));
}

// Renders on a w x h canvas and writes the SVG atomically.
template <class Draw>
void write_svg(const std::filesystem::path& path, int width, int height, Draw&& draw) {
  std::string bytes;
  {
    Surface surface(cairo().svg_surface_create_for_stream(append_to_string, &bytes, width, height));
    render(surface.get(), path, draw);
    cairo().surface_finish(surface.get());  // flushes the SVG into `bytes`
  }
  write_file_atomic(path, bytes);
}

void set_color(cairo_t* cr, Color c) {
  cairo().set_source_rgb(cr, c.r, c.g, c.b);
}

void set_font(cairo_t* cr, double size, bool bold = false) {
  cairo().select_font_face(cr, kFontFamily, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo().set_font_size(cr, size);
}

double text_width(cairo_t* cr, const std::string& text) {
  cairo_text_extents_t e;
  cairo().text_extents(cr, text.c_str(), &e);
  return e.x_advance;
}

// Text anchored at (x, y): ax = 0 left, 0.5 centre, 1 right; ay = 0 top, 0.5 middle, 1 baseline-ish bottom.
void draw_text(cairo_t* cr, const std::string& text, double x, double y, double ax, double ay) {
  cairo_font_extents_t fe;
  cairo().font_extents(cr, &fe);
  const double width = text_width(cr, text);
  const double height = fe.ascent + fe.descent;
  cairo().move_to(cr, x - ax * width, y - ay * height + fe.ascent);
  cairo().show_text(cr, text.c_str());
}

std::string tick_label(double value, double step) {
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  return fmt::format("{:.{}f}", value, decimals);
}

void set_dash(cairo_t* cr, int style) {
  static const double dashed[] = {7, 4};
  static const double dash_dot[] = {7, 3, 1.5, 3};
  if (style == 1)
    cairo().set_dash(cr, dashed, 2, 0);
  else if (style == 2)
    cairo().set_dash(cr, dash_dot, 4, 0);
  else
    cairo().set_dash(cr, nullptr, 0, 0);
}

void render_curves(cairo_t* cr, int width, int height, const std::vector<Series>& series, int total_epochs) {
  std::vector<std::vector<double>> values;
  for (const Series& s : series)
    values.push_back(s.values);
  const auto [y_lo, y_hi] = curves_y_range(values);
  PlotArea area;
  area.frame = {64, 20, width - 64.0 - 24, height - 20.0 - 56};
  area.x_lo = 1;
  area.x_hi = std::max(2, total_epochs);
  area.y_lo = y_lo;
  area.y_hi = y_hi;
  const Ticks y_ticks = nice_ticks(y_lo, y_hi, 6);
  Ticks x_ticks = nice_ticks(1, area.x_hi, 10);
  x_ticks.step = std::max(1.0, x_ticks.step);

  // Grid and ticks.
  set_font(cr, 13);
  cairo().set_line_width(cr, 1);
  for (double y : y_ticks.values) {
    if (y < y_lo - 1e-9 || y > y_hi + 1e-9) continue;
    set_color(cr, kGrid);
    cairo().move_to(cr, area.frame.x, std::round(area.py(y)) + 0.5);
    cairo().line_to(cr, area.frame.x + area.frame.width, std::round(area.py(y)) + 0.5);
    cairo().stroke(cr);
    set_color(cr, kText);
    draw_text(cr, tick_label(y, y_ticks.step), area.frame.x - 8, area.py(y), 1, 0.5);
  }
  for (double x = 1; x <= area.x_hi + 1e-9; x += x_ticks.step) {
    set_color(cr, kGrid);
    cairo().move_to(cr, std::round(area.px(x)) + 0.5, area.frame.y);
    cairo().line_to(cr, std::round(area.px(x)) + 0.5, area.frame.y + area.frame.height);
    cairo().stroke(cr);
    set_color(cr, kText);
    draw_text(cr, tick_label(x, 1), area.px(x), area.frame.y + area.frame.height + 6, 0.5, 0);
  }
  draw_text(cr, "epoch", area.frame.x + area.frame.width / 2, height - 6, 0.5, 1);
  set_color(cr, kText);
  cairo().rectangle(cr, area.frame.x + 0.5, area.frame.y + 0.5, area.frame.width, area.frame.height);
  cairo().stroke(cr);

  // The series, clipped to the frame.
  cairo().save(cr);
  cairo().rectangle(cr, area.frame.x, area.frame.y, area.frame.width, area.frame.height);
  cairo().clip(cr);
  for (std::size_t s = 0; s < series.size(); ++s) {
    set_color(cr, kSeriesColors[s % 4]);
    cairo().set_line_width(cr, 2);
    set_dash(cr, static_cast<int>(s % 3));
    bool drawing = false;
    for (std::size_t i = 0; i < series[s].values.size(); ++i) {
      const double v = series[s].values[i];
      if (!std::isfinite(v)) {
        drawing = false;
        continue;
      }
      if (drawing)
        cairo().line_to(cr, area.px(static_cast<double>(i + 1)), area.py(v));
      else
        cairo().move_to(cr, area.px(static_cast<double>(i + 1)), area.py(v));
      drawing = true;
    }
    cairo().stroke(cr);
    set_dash(cr, 0);
    for (std::size_t i = 0; i < series[s].values.size(); ++i) {
      if (!std::isfinite(series[s].values[i])) continue;
      cairo().arc(cr, area.px(static_cast<double>(i + 1)), area.py(series[s].values[i]), 3, 0, 2 * M_PI);
      cairo().fill(cr);
    }
  }
  cairo().restore(cr);

  // Legend where the curves leave room.
  set_font(cr, 13);
  double label_width = 0;
  for (const Series& s : series)
    label_width = std::max(label_width, text_width(cr, s.name));
  const double row = 20, sample = 30;
  const Rect box =
      place_legend(area, label_width + sample + 24, row * static_cast<double>(series.size()) + 10, values);
  cairo().set_source_rgba(cr, 1, 1, 1, 0.9);
  cairo().rectangle(cr, box.x, box.y, box.width, box.height);
  cairo().fill_preserve(cr);
  set_color(cr, {0.7, 0.7, 0.7});
  cairo().set_line_width(cr, 1);
  cairo().stroke(cr);
  for (std::size_t s = 0; s < series.size(); ++s) {
    const double y = box.y + 5 + row * (static_cast<double>(s) + 0.5);
    set_color(cr, kSeriesColors[s % 4]);
    cairo().set_line_width(cr, 2);
    set_dash(cr, static_cast<int>(s % 3));
    cairo().move_to(cr, box.x + 8, y);
    cairo().line_to(cr, box.x + 8 + sample, y);
    cairo().stroke(cr);
    set_dash(cr, 0);
    set_color(cr, kText);
    draw_text(cr, series[s].name, box.x + 14 + sample, y, 0, 0.5);
  }
}

// One panel of the tuning chart: `value(path)` against log10 of the penalty.
void render_tune_panel(cairo_t* cr, const Rect& frame, const std::string& title,
                       const std::vector<TunePath>& paths, std::vector<double> TunePath::*values,
                       double best_lambda, std::size_t best_path) {
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo;
  double y_lo = std::numeric_limits<double>::infinity(), y_hi = -y_lo;
  for (const TunePath& p : paths) {
    for (std::size_t i = 0; i < p.lambdas.size(); ++i) {
      if (p.lambdas[i] > 0) {
        x_lo = std::min(x_lo, std::log10(p.lambdas[i]));
        x_hi = std::max(x_hi, std::log10(p.lambdas[i]));
      }
      const double v = (p.*values)[i];
      if (std::isfinite(v)) {
        y_lo = std::min(y_lo, v);
        y_hi = std::max(y_hi, v);
      }
    }
  }
  if (!std::isfinite(x_lo)) x_lo = x_hi = 0;
  if (!std::isfinite(y_lo)) y_lo = y_hi = 0;
  const double x_zero = x_lo - 1;  // where a penalty of 0 goes
  const bool has_zero = std::any_of(paths.begin(), paths.end(), [](const TunePath& p) {
    return std::find(p.lambdas.begin(), p.lambdas.end(), 0.0) != p.lambdas.end();
  });
  PlotArea area;
  area.frame = frame;
  const Ticks y_ticks = nice_ticks(y_lo, y_hi, 6);
  area.x_lo = (has_zero ? x_zero : x_lo) - 0.3;
  area.x_hi = std::max(x_hi, area.x_lo + 1) + 0.3;
  area.y_lo = y_ticks.lo;
  area.y_hi = y_ticks.hi;
  const auto x_of = [&](double lambda) { return lambda > 0 ? std::log10(lambda) : x_zero; };

  set_font(cr, 12);
  cairo().set_line_width(cr, 1);
  for (double y : y_ticks.values) {
    set_color(cr, kGrid);
    cairo().move_to(cr, frame.x, std::round(area.py(y)) + 0.5);
    cairo().line_to(cr, frame.x + frame.width, std::round(area.py(y)) + 0.5);
    cairo().stroke(cr);
    set_color(cr, kText);
    draw_text(cr, tick_label(y, y_ticks.step), frame.x - 6, area.py(y), 1, 0.5);
  }
  const int decade_step = x_hi - x_lo > 8 ? 2 : 1;
  for (int e = static_cast<int>(std::ceil(area.x_lo)); e <= static_cast<int>(std::floor(area.x_hi)); ++e) {
    if ((e - static_cast<int>(std::ceil(area.x_lo))) % decade_step != 0) continue;
    if (has_zero && e <= x_zero + 0.5) continue;
    set_color(cr, kGrid);
    cairo().move_to(cr, std::round(area.px(e)) + 0.5, frame.y);
    cairo().line_to(cr, std::round(area.px(e)) + 0.5, frame.y + frame.height);
    cairo().stroke(cr);
    set_color(cr, kText);
    draw_text(cr, fmt::format("1e{}", e), area.px(e), frame.y + frame.height + 5, 0.5, 0);
  }
  if (has_zero) draw_text(cr, "0", area.px(x_zero), frame.y + frame.height + 5, 0.5, 0);
  draw_text(cr, "L2 penalty (log scale)", frame.x + frame.width / 2, frame.y + frame.height + 34, 0.5, 1);
  set_font(cr, 13, true);
  draw_text(cr, title, frame.x + frame.width / 2, frame.y - 8, 0.5, 1);
  set_color(cr, kText);
  cairo().rectangle(cr, frame.x + 0.5, frame.y + 0.5, frame.width, frame.height);
  cairo().stroke(cr);

  cairo().save(cr);
  cairo().rectangle(cr, frame.x, frame.y, frame.width, frame.height);
  cairo().clip(cr);
  for (std::size_t s = 0; s < paths.size(); ++s) {
    const TunePath& p = paths[s];
    set_color(cr, kSeriesColors[s % 4]);
    cairo().set_line_width(cr, 2);
    set_dash(cr, static_cast<int>(s % 3));
    bool drawing = false;
    for (std::size_t i = 0; i < p.lambdas.size(); ++i) {
      const double v = (p.*values)[i];
      if (!std::isfinite(v)) {
        drawing = false;
        continue;
      }
      if (drawing)
        cairo().line_to(cr, area.px(x_of(p.lambdas[i])), area.py(v));
      else
        cairo().move_to(cr, area.px(x_of(p.lambdas[i])), area.py(v));
      drawing = true;
    }
    cairo().stroke(cr);
    set_dash(cr, 0);
    for (std::size_t i = 0; i < p.lambdas.size(); ++i) {
      const double v = (p.*values)[i];
      if (!std::isfinite(v)) continue;
      cairo().arc(cr, area.px(x_of(p.lambdas[i])), area.py(v), 3, 0, 2 * M_PI);
      cairo().fill(cr);
      if (s == best_path && p.lambdas[i] == best_lambda) {
        set_color(cr, kWrong);
        cairo().set_line_width(cr, 2);
        cairo().arc(cr, area.px(x_of(p.lambdas[i])), area.py(v), 8, 0, 2 * M_PI);
        cairo().stroke(cr);
        set_color(cr, kSeriesColors[s % 4]);
      }
    }
  }
  cairo().restore(cr);
}

void render_tune(cairo_t* cr, int width, int height, const std::vector<TunePath>& paths, double best_lambda,
                 std::size_t best_path) {
  const double legend = paths.size() > 1 ? 24 : 0;
  const double top = 34 + legend, bottom = 50, left = 64, gap = 84;
  const double panel_width = (width - left - gap - 20) / 2.0;
  const Rect acc{left, top, panel_width, height - top - bottom};
  const Rect loss{left + panel_width + gap, top, panel_width, height - top - bottom};
  render_tune_panel(cr, acc, "validation accuracy", paths, &TunePath::val_acc, best_lambda, best_path);
  render_tune_panel(cr, loss, "validation loss", paths, &TunePath::val_loss, best_lambda, best_path);
  if (legend > 0) {  // one row of path names across the top
    set_font(cr, 12);
    double x = left;
    for (std::size_t s = 0; s < paths.size(); ++s) {
      set_color(cr, kSeriesColors[s % 4]);
      cairo().set_line_width(cr, 2);
      set_dash(cr, static_cast<int>(s % 3));
      cairo().move_to(cr, x, 14);
      cairo().line_to(cr, x + 24, 14);
      cairo().stroke(cr);
      set_dash(cr, 0);
      set_color(cr, kText);
      draw_text(cr, paths[s].name, x + 30, 14, 0, 0.5);
      x += 44 + text_width(cr, paths[s].name);
    }
  }
}

// An RGB24 image surface whose pixel (x, y) is pixel_rgb(x, y) as 0xRRGGBB, for drawing scaled with
// nearest-neighbour filtering.
template <class PixelRgb>
Surface image_surface(int width, int height, PixelRgb&& pixel_rgb) {
  Surface surface(cairo().image_surface_create(CAIRO_FORMAT_RGB24, width, height));
  cairo().surface_flush(surface.get());
  unsigned char* data = cairo().image_surface_get_data(surface.get());
  const int stride = cairo().image_surface_get_stride(surface.get());
  for (int y = 0; y < height; ++y) {
    auto* row = reinterpret_cast<std::uint32_t*>(data + y * stride);
    for (int x = 0; x < width; ++x)
      row[x] = pixel_rgb(x, y);
  }
  cairo().surface_mark_dirty(surface.get());
  return surface;
}

// A gray image of bytes.
Surface gray_surface(const std::uint8_t* pixels, int width, int height) {
  return image_surface(width, height, [&](int x, int y) {
    const std::uint32_t v = pixels[y * width + x];
    return (v << 16) | (v << 8) | v;
  });
}

void paint_scaled(cairo_t* cr, cairo_surface_t* image, const Rect& where, double scale) {
  cairo().save(cr);
  cairo().translate(cr, where.x, where.y);
  cairo().scale(cr, scale, scale);
  cairo().set_source_surface(cr, image, 0, 0);
  cairo().pattern_set_filter(cairo().get_source(cr), CAIRO_FILTER_NEAREST);  // crisp pixels, no blur
  cairo().paint(cr);
  cairo().restore(cr);
}

}  // namespace

void check_drawing_available() {
  (void)cairo();
}

void draw_training_curves(const std::vector<Series>& series, int total_epochs,
                          const std::filesystem::path& png, const std::filesystem::path& svg) {
  constexpr int kWidth = 720, kHeight = 440;
  write_png(png, kWidth, kHeight,
            [&](cairo_t* cr) { render_curves(cr, kWidth, kHeight, series, total_epochs); });
  if (!svg.empty()) {
    write_svg(svg, kWidth, kHeight,
              [&](cairo_t* cr) { render_curves(cr, kWidth, kHeight, series, total_epochs); });
  }
}

void draw_tune_chart(const std::vector<TunePath>& paths, double best_lambda, std::size_t best_path,
                     const std::filesystem::path& png, const std::filesystem::path& svg) {
  constexpr int kWidth = 960, kHeight = 420;
  const auto draw = [&](cairo_t* cr) { render_tune(cr, kWidth, kHeight, paths, best_lambda, best_path); };
  write_png(png, kWidth, kHeight, draw);
  if (!svg.empty()) write_svg(svg, kWidth, kHeight, draw);
}

void draw_prediction_grid(const Dataset& data, const std::vector<GridItem>& items,
                          const std::vector<std::string>& class_names, const std::filesystem::path& png) {
  const int h = static_cast<int>(data.height), w = static_cast<int>(data.width);
  const GridLayout g = prediction_grid_layout(static_cast<int>(std::max<std::size_t>(items.size(), 1)), w, h);
  write_png(png, static_cast<int>(std::ceil(g.width)), static_cast<int>(std::ceil(g.height)),
            [&](cairo_t* cr) {
              if (items.empty()) {
                set_font(cr, g.font_size);
                set_color(cr, kText);
                draw_text(cr, "no images", g.width / 2, g.height / 2, 0.5, 0.5);
                return;
              }
              for (std::size_t i = 0; i < items.size(); ++i) {
                const GridItem& item = items[i];
                const int truth = data.labels[item.index];
                const bool wrong = item.predicted != truth;
                const Rect title = g.title_rect(static_cast<int>(i));
                const Rect image = g.image_rect(static_cast<int>(i));
                set_font(cr, g.font_size);
                set_color(cr, kText);
                const double cx = title.x + title.width / 2;
                draw_text(cr, class_names[static_cast<std::size_t>(truth)], cx, title.y + 2, 0.5, 0);
                set_font(cr, g.font_size, /*bold=*/wrong);
                set_color(cr, wrong ? kWrong : Color{0.35, 0.35, 0.35});
                draw_text(cr, class_names[static_cast<std::size_t>(item.predicted)], cx,
                          title.y + 2 + g.font_size * 1.3, 0.5, 0);
                Surface surface = gray_surface(data.image(item.index), w, h);
                paint_scaled(cr, surface.get(), image, g.image_scale);
                if (wrong) {
                  set_color(cr, kWrong);
                  cairo().set_line_width(cr, g.image_scale >= 2 ? 3 : 2);
                  cairo().rectangle(cr, image.x - 1.5, image.y - 1.5, image.width + 3, image.height + 3);
                  cairo().stroke(cr);
                }
              }
              set_font(cr, g.font_size);
              set_color(cr, {0.35, 0.35, 0.35});
              draw_text(cr, "above each image: true label, then predicted label (red and framed when wrong)",
                        g.margin, g.height - g.margin, 0, 1);
            });
}

void draw_confusion_matrix(const std::vector<std::vector<std::int64_t>>& confusion,
                           const std::vector<std::string>& class_names, const std::filesystem::path& png) {
  const int K = static_cast<int>(confusion.size());
  const double cell = 52, label_space = 110, top = 40, bottom_labels = 80;
  const int width = static_cast<int>(label_space + 30 + K * cell + 20);
  const int height = static_cast<int>(top + K * cell + bottom_labels + 10);
  std::int64_t max_count = 1;
  for (const auto& row : confusion)
    for (std::int64_t c : row)
      max_count = std::max(max_count, c);
  write_png(png, width, height, [&](cairo_t* cr) {
    const double x0 = label_space + 30, y0 = top;
    set_font(cr, 14, true);
    set_color(cr, kText);
    draw_text(cr, "predicted class", x0 + K * cell / 2, 10, 0.5, 0);
    cairo().save(cr);
    cairo().translate(cr, 12, y0 + K * cell / 2);
    cairo().rotate(cr, -M_PI / 2);
    draw_text(cr, "true class", 0, 0, 0.5, 0);
    cairo().restore(cr);
    for (int t = 0; t < K; ++t) {
      for (int p = 0; p < K; ++p) {
        const double share =
            static_cast<double>(confusion[static_cast<std::size_t>(t)][static_cast<std::size_t>(p)]) /
            static_cast<double>(max_count);
        // White to dark blue; the square root keeps small off-diagonal counts visible.
        const double v = std::sqrt(share);
        cairo().set_source_rgb(cr, 1 - 0.97 * v, 1 - 0.78 * v, 1 - 0.5 * v);
        cairo().rectangle(cr, x0 + p * cell, y0 + t * cell, cell, cell);
        cairo().fill(cr);
        set_font(cr, 13, t == p);
        if (v > 0.55)
          cairo().set_source_rgb(cr, 1, 1, 1);
        else
          set_color(cr, kText);
        draw_text(cr, std::to_string(confusion[static_cast<std::size_t>(t)][static_cast<std::size_t>(p)]),
                  x0 + (p + 0.5) * cell, y0 + (t + 0.5) * cell, 0.5, 0.5);
      }
    }
    set_color(cr, {0.6, 0.6, 0.6});
    cairo().set_line_width(cr, 1);
    cairo().rectangle(cr, x0 + 0.5, y0 + 0.5, K * cell, K * cell);
    cairo().stroke(cr);
    set_font(cr, 13);
    set_color(cr, kText);
    for (int k = 0; k < K; ++k) {
      draw_text(cr, class_names[static_cast<std::size_t>(k)], x0 - 8, y0 + (k + 0.5) * cell, 1, 0.5);
      cairo().save(cr);
      cairo().translate(cr, x0 + (k + 0.5) * cell, y0 + K * cell + 8);
      cairo().rotate(cr, -M_PI / 4);
      draw_text(cr, class_names[static_cast<std::size_t>(k)], 0, 0, 1, 0.5);
      cairo().restore(cr);
    }
  });
}

void draw_weight_templates(const SoftmaxModel& model, int height, int width,
                           const std::vector<std::string>& class_names, const std::filesystem::path& png) {
  const int K = model.classes();
  const int columns = std::min(K, 5), rows = (K + columns - 1) / columns;
  const int scale = std::max(1, 168 / std::max(height, width));
  const double tile_w = width * scale, tile_h = height * scale, title = 24, gap = 14, margin = 14,
               footer = 26;
  const int W = static_cast<int>(2 * margin + columns * tile_w + (columns - 1) * gap);
  const int H = static_cast<int>(2 * margin + rows * (title + tile_h) + (rows - 1) * gap + footer);
  write_png(png, W, H, [&](cairo_t* cr) {
    for (int k = 0; k < K; ++k) {
      const double x = margin + (k % columns) * (tile_w + gap);
      const double y = margin + (k / columns) * (title + tile_h + gap);
      set_font(cr, 14);
      set_color(cr, kText);
      draw_text(cr, class_names[static_cast<std::size_t>(k)], x + tile_w / 2, y, 0.5, 0);
      const auto column = model.W.col(k);
      const double max_abs = std::max(1e-12, static_cast<double>(column.cwiseAbs().maxCoeff()));
      Surface surface = image_surface(width, height, [&](int px, int py) {
        const double v = std::clamp(column(py * width + px) / max_abs, -1.0, 1.0);
        // Diverging: white at zero, towards red (0.70, 0.09, 0.17) or blue (0.13, 0.40, 0.67).
        const Color end = v >= 0 ? Color{0.70, 0.09, 0.17} : Color{0.13, 0.40, 0.67};
        const double a = std::abs(v);
        const auto channel = [&](double c) {
          return static_cast<std::uint32_t>(std::lround(255 * (1 - a + a * c)));
        };
        return (channel(end.r) << 16) | (channel(end.g) << 8) | channel(end.b);
      });
      paint_scaled(cr, surface.get(), {x, y + title, tile_w, tile_h}, scale);
    }
    set_font(cr, 12);
    set_color(cr, {0.35, 0.35, 0.35});
    draw_text(
        cr,
        "weights per class: red positive, blue negative, white zero (each class scaled to its largest |w|)",
        W / 2.0, H - margin, 0.5, 1);
  });
}

std::string confusion_csv(const std::vector<std::vector<std::int64_t>>& confusion,
                          const std::vector<std::string>& class_names) {
  const auto quoted = [](const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s)
      q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  std::string csv = "true\\predicted";
  for (const auto& name : class_names)
    csv += "," + quoted(name);
  csv += "\n";
  for (std::size_t t = 0; t < confusion.size(); ++t) {
    csv += quoted(class_names[t]);
    for (std::int64_t c : confusion[t])
      csv += "," + std::to_string(c);
    csv += "\n";
  }
  return csv;
}

std::string gray_image_png(std::span<const std::uint8_t> pixels, int width, int height, int scale) {
  if (width < 1 || height < 1 || scale < 1 ||
      pixels.size() != static_cast<std::size_t>(width) * static_cast<std::size_t>(height))
    throw Error("gray_image_png: " + std::to_string(pixels.size()) + " pixels do not make a " +
                std::to_string(width) + "x" + std::to_string(height) + " image");
  if (static_cast<std::int64_t>(width) * scale > std::numeric_limits<int>::max() ||
      static_cast<std::int64_t>(height) * scale > std::numeric_limits<int>::max()) {
    throw Error("gray_image_png: a " + std::to_string(width) + "x" + std::to_string(height) +
                " image scaled " + std::to_string(scale) + " times is too large");
  }
  check_png_size(width * scale, height * scale, "image.png");
  Surface surface(cairo().image_surface_create(CAIRO_FORMAT_RGB24, width * scale, height * scale));
  check(cairo().surface_status(surface.get()), "image.png");
  cairo().surface_flush(surface.get());
  unsigned char* data = cairo().image_surface_get_data(surface.get());
  const int stride = cairo().image_surface_get_stride(surface.get());
  for (int y = 0; y < height * scale; ++y) {
    auto* row = reinterpret_cast<std::uint32_t*>(data + static_cast<std::ptrdiff_t>(y) * stride);
    for (int x = 0; x < width * scale; ++x) {
      const std::uint32_t g = pixels[static_cast<std::size_t>(y / scale) * static_cast<std::size_t>(width) +
                                     static_cast<std::size_t>(x / scale)];
      row[x] = 0xff000000u | (g << 16) | (g << 8) | g;
    }
  }
  cairo().surface_mark_dirty(surface.get());
  return png_bytes(surface.get(), width * scale, height * scale, "image.png");
}

}  // namespace softreg::plot
