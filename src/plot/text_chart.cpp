// The live terminal view: the training curves in Unicode braille, one character = 2x4 dots.
#include <fmt/format.h>
#include <algorithm>
#include <cmath>

#include "softreg/plot.hpp"

namespace softreg::plot {
namespace {

// Bit of each dot in a braille character, indexed [row][column] (Unicode's dot numbering).
constexpr unsigned kBrailleBits[4][2] = {{0x01, 0x08}, {0x02, 0x10}, {0x04, 0x20}, {0x40, 0x80}};
// ANSI colours in the order of the picture's series: blue, magenta, green, red.
constexpr int kAnsiColors[] = {34, 35, 32, 31};

std::string utf8(char32_t c) {
  std::string out;
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
  return out;
}

}  // namespace

std::vector<std::string> braille_chart(const std::vector<Series>& series, int total_epochs, int width,
                                       int height, bool color) {
  std::vector<std::vector<double>> values;
  for (const Series& s : series)
    values.push_back(s.values);
  // Named copies: clang before 16 cannot capture structured bindings in the lambdas below.
  const auto y_range = curves_y_range(values);
  const double lo = y_range.first, hi = y_range.second;
  const int dots_x = 2 * width, dots_y = 4 * height;
  std::vector<unsigned> cells(static_cast<std::size_t>(width * height), 0);
  std::vector<int> owner(static_cast<std::size_t>(width * height), -1);  // first series to touch a cell

  const auto dot_x = [&](double epoch) {
    return total_epochs <= 1 ? 0.0 : (epoch - 1) / (total_epochs - 1) * (dots_x - 1);
  };
  const auto dot_y = [&](double v) { return (hi - v) / (hi - lo) * (dots_y - 1); };
  const auto plot = [&](double fx, double fy, int s) {
    const int x = std::clamp(static_cast<int>(std::lround(fx)), 0, dots_x - 1);
    const int y = std::clamp(static_cast<int>(std::lround(fy)), 0, dots_y - 1);
    const std::size_t cell = static_cast<std::size_t>((y / 4) * width + x / 2);
    cells[cell] |= kBrailleBits[y % 4][x % 2];
    if (owner[cell] < 0) owner[cell] = s;
  };
  for (std::size_t s = 0; s < series.size(); ++s) {
    const auto& v = series[s].values;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) continue;
      const double x0 = dot_x(static_cast<double>(i + 1)), y0 = dot_y(v[i]);
      plot(x0, y0, static_cast<int>(s));
      if (i + 1 < v.size() && std::isfinite(v[i + 1])) {
        const double x1 = dot_x(static_cast<double>(i + 2)), y1 = dot_y(v[i + 1]);
        const int steps = static_cast<int>(std::ceil(std::max(std::abs(x1 - x0), std::abs(y1 - y0)))) + 1;
        for (int t = 1; t < steps; ++t) {
          const double f = static_cast<double>(t) / steps;
          plot(x0 + f * (x1 - x0), y0 + f * (y1 - y0), static_cast<int>(s));
        }
      }
    }
  }

  std::vector<std::string> lines;
  for (int row = 0; row < height; ++row) {
    std::string line;
    if (row == 0)
      line = fmt::format("{:>5.2f} ┤", hi);
    else if (row == height - 1)
      line = fmt::format("{:>5.2f} ┤", lo);
    else
      line = "      │";
    for (int col = 0; col < width; ++col) {
      const std::size_t cell = static_cast<std::size_t>(row * width + col);
      const std::string glyph = cells[cell] ? utf8(0x2800 + cells[cell]) : " ";
      if (color && owner[cell] >= 0)
        line += fmt::format("\x1b[{}m{}\x1b[0m", kAnsiColors[owner[cell] % 4], glyph);
      else
        line += glyph;
    }
    lines.push_back(line);
  }
  std::string axis = "      └";
  for (int col = 0; col < width; ++col)
    axis += "─";
  lines.push_back(axis);
  const std::string last = fmt::format("{}", std::max(1, total_epochs));
  lines.push_back(fmt::format("       1{:>{}}", last + " epochs", std::max(1, width - 1)));
  std::string legend = "       ";
  for (std::size_t s = 0; s < series.size(); ++s) {
    const std::string mark = "━━ " + series[s].name;
    legend += color ? fmt::format("\x1b[{}m{}\x1b[0m", kAnsiColors[s % 4], mark) : mark;
    legend += "   ";
  }
  lines.push_back(legend);
  return lines;
}

}  // namespace softreg::plot
