// Layout arithmetic for the pictures: ticks, ranges, legend placement, grid cells. No drawing here.
#include <algorithm>
#include <cmath>
#include <limits>

#include "softreg/plot.hpp"

namespace softreg::plot {
namespace {
// Cairo image surfaces are limited to 32767 pixels a side; stay clear of it.
constexpr double kMaxPictureSide = 30000;
// Width of the longest Fashion-MNIST class name ("ankle boot") in average character widths.
constexpr double kLabelChars = 11;
}  // namespace

Ticks nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    lo -= 0.5;
    hi += 0.5;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double normalized = raw / magnitude;
  const double factor = normalized < 1.5 ? 1 : normalized < 3.5 ? 2 : normalized < 7.5 ? 5 : 10;
  Ticks ticks;
  ticks.step = factor * magnitude;
  // A small tolerance keeps 0.3 / 0.1 = 2.9999999999999996 from losing a step to rounding.
  ticks.lo = std::floor(lo / ticks.step + 1e-9) * ticks.step;
  ticks.hi = std::ceil(hi / ticks.step - 1e-9) * ticks.step;
  const int count = static_cast<int>(std::lround((ticks.hi - ticks.lo) / ticks.step));
  for (int i = 0; i <= count; ++i)
    ticks.values.push_back(ticks.lo + i * ticks.step);
  return ticks;
}

std::pair<double, double> curves_y_range(const std::vector<std::vector<double>>& series) {
  double lo = 0.3, hi = 0.9;
  for (const auto& values : series) {
    for (double v : values) {
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, std::floor(v * 10 + 1e-9) / 10);
      hi = std::max(hi, std::ceil(v * 10 - 1e-9) / 10);
    }
  }
  return {lo, hi};
}

Rect place_legend(const PlotArea& area, double width, double height,
                  const std::vector<std::vector<double>>& series) {
  const double pad = 8;
  const Rect& f = area.frame;
  const double left = f.x + pad, right = f.x + f.width - width - pad, center_x = f.x + (f.width - width) / 2;
  const double top = f.y + pad, bottom = f.y + f.height - height - pad,
               middle_y = f.y + (f.height - height) / 2;
  // In order of preference when several are equally clear (matplotlib's 'best' prefers upper right).
  const std::vector<Rect> candidates = {
      {right, top, width, height},    {left, top, width, height},        {right, bottom, width, height},
      {left, bottom, width, height},  {right, middle_y, width, height},  {left, middle_y, width, height},
      {center_x, top, width, height}, {center_x, bottom, width, height}, {center_x, middle_y, width, height},
  };
  Rect best = candidates.front();
  int best_hits = std::numeric_limits<int>::max();
  for (const Rect& r : candidates) {
    int hits = 0;
    for (const auto& values : series) {
      // Sample each segment of the polyline as drawn.
      for (std::size_t i = 0; i < values.size(); ++i) {
        const int samples = i + 1 < values.size() ? 16 : 1;
        for (int s = 0; s < samples; ++s) {
          const double t = static_cast<double>(s) / samples;
          const double x = static_cast<double>(i + 1) + t;
          const double y = i + 1 < values.size() ? values[i] * (1 - t) + values[i + 1] * t : values[i];
          if (std::isfinite(y) && r.contains(area.px(x), area.py(y))) ++hits;
        }
      }
    }
    if (hits < best_hits) {
      best_hits = hits;
      best = r;
    }
  }
  return best;
}

GridLayout prediction_grid_layout(int count, int image_width, int image_height) {
  GridLayout g;
  g.count = count;
  g.image_scale = count <= 20 ? 4 : count <= 100 ? 3 : count <= 1000 ? 2 : 1;
  g.font_size = g.image_scale >= 3 ? 13 : g.image_scale == 2 ? 11 : 9;
  g.margin = 10;
  const double pad = 8;
  g.title_height = 2 * g.font_size * 1.3 + 4;
  // Wide enough for the image and for the longest label (average glyph width is about 0.6 em).
  g.image_width = image_width * g.image_scale;
  g.image_height = image_height * g.image_scale;
  g.cell_width = std::max(g.image_width, kLabelChars * 0.6 * g.font_size) + pad;
  g.cell_height = g.title_height + g.image_height + pad;
  // A few images in one row, like the seed; more wrap to rows of a comfortable width.
  const double target_width = g.image_scale > 1 ? 1400 : 2800;
  g.columns = count <= 8 ? std::max(1, count)
                         : std::clamp(static_cast<int>(target_width / g.cell_width), 1, std::max(1, count));
  g.rows = (count + g.columns - 1) / g.columns;
  while (g.rows * g.cell_height + 2 * g.margin + 2 * g.font_size > kMaxPictureSide &&
         (g.columns + 1) * g.cell_width + 2 * g.margin <= kMaxPictureSide) {
    ++g.columns;
    g.rows = (count + g.columns - 1) / g.columns;
  }
  g.width = 2 * g.margin + g.columns * g.cell_width;
  g.footer_height = g.font_size * 1.8;
  g.height = 2 * g.margin + std::max(1, g.rows) * g.cell_height + g.footer_height;
  return g;
}

Rect GridLayout::title_rect(int i) const {
  const int column = i % columns, row = i / columns;
  return {margin + column * cell_width, margin + row * cell_height, cell_width, title_height};
}

Rect GridLayout::image_rect(int i) const {
  const Rect title = title_rect(i);
  return {title.x + (cell_width - image_width) / 2, title.y + title_height, image_width, image_height};
}

}  // namespace softreg::plot
