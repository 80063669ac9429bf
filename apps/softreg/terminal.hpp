// What the CLI shows while it works: a progress bar when stderr is a terminal, nothing otherwise.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

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

}  // namespace softreg::cli
