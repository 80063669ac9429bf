// Progress bar drawing.
#include "terminal.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <cstdio>

namespace softreg::cli {
namespace {
constexpr int kBarWidth = 30;
constexpr auto kRedrawInterval = std::chrono::milliseconds(50);
}  // namespace

bool is_terminal(int fd) {
  return ::isatty(fd) == 1;
}

void ProgressBar::update(const std::string& label, std::size_t done, std::size_t total) {
  if (!enabled_ || total == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (shown_ && done < total && now - last_draw_ < kRedrawInterval) return;
  last_draw_ = now;
  const int filled = static_cast<int>(static_cast<double>(kBarWidth) * static_cast<double>(done) /
                                      static_cast<double>(total));
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kBarWidth, '.');
  fmt::print(stderr, "\r{} [{}] {:3d}%\x1b[K", label, bar, static_cast<int>(100 * done / total));
  std::fflush(stderr);
  shown_ = true;
}

void LiveView::draw(const std::vector<std::string>& lines) {
  if (!enabled_) return;
  std::string out;
  if (lines_drawn_ > 0) out += fmt::format("\x1b[{}A", lines_drawn_);  // back to the block's first line
  out += "\r\x1b[J";                                                   // and clear everything below
  for (const std::string& line : lines)
    out += line + "\n";
  std::fputs(out.c_str(), stderr);
  std::fflush(stderr);
  lines_drawn_ = lines.size();
}

void ProgressBar::message(const std::string& text) {
  if (!enabled_) return;
  fmt::print(stderr, "\r{}\x1b[K", text);
  std::fflush(stderr);
  shown_ = true;
}

void ProgressBar::clear() {
  if (!shown_) return;
  fmt::print(stderr, "\r\x1b[K");
  std::fflush(stderr);
  shown_ = false;
}

}  // namespace softreg::cli
