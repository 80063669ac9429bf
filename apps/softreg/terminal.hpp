// What the CLI shows while it works: a progress bar when stderr is a terminal, nothing otherwise.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace softreg::cli {

/// True when the stream (fileno) is a terminal.
bool is_terminal(int fd);

/// A one-line progress bar on stderr, redrawn at most a few times a second; inactive when disabled.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  ~ProgressBar() { clear(); }

  /// Shows `label` and done/total as a bar.
  void update(const std::string& label, std::size_t done, std::size_t total);
  /// Shows a one-line status message in place of the bar.
  void message(const std::string& text);
  /// Erases the bar so a normal line can be printed.
  void clear();

 private:
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

/// A block of lines on stderr that is redrawn in place (cursor moved back up over the previous draw).
class LiveView {
 public:
  explicit LiveView(bool enabled) : enabled_(enabled) {}
  void draw(const std::vector<std::string>& lines);

 private:
  bool enabled_;
  std::size_t lines_drawn_ = 0;
};

}  // namespace softreg::cli
