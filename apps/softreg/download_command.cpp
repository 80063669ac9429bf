// softreg data download NAME: a data set by name into its cache folder (or --to DIR), with a progress
// bar on a terminal and one line per file otherwise; also what `train --download` runs.
#include "download_command.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <cmath>
#include <cstdio>

#include "common.hpp"
#include "terminal.hpp"

namespace softreg::cli {
namespace {

// "26.4 MB", "29.5 kB", "512 B".
std::string megabytes(double bytes) {
  if (bytes >= 1e6) return fmt::format("{:.1f} MB", bytes / 1e6);
  if (bytes >= 1e3) return fmt::format("{:.1f} kB", bytes / 1e3);
  return fmt::format("{:.0f} B", bytes);
}

std::string duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return fmt::format("{:.0f} s", seconds);
  return fmt::format("{:.0f} min {:02.0f} s", std::floor(seconds / 60), std::fmod(seconds, 60));
}

struct DownloadFlags {
  std::string name;
  std::string to;
  std::vector<std::string> mirrors;
  double connect_timeout = 20;
  double stall_timeout = 30;
  long long retries = 3;
};

void check_range(const char* flag, double value, double low, double high) {
  if (!(value >= low && value <= high))
    throw UsageError(fmt::format("{} must be between {:g} and {:g}, got {:g}", flag, low, high, value));
}

}  // namespace

DownloadReport download_with_progress(const KnownDataset& dataset, const std::filesystem::path& folder,
                                      const DownloadOptions& base) {
  const bool terminal = is_terminal(STDERR_FILENO);
  DownloadOptions options = base;
  options.should_stop = [] { return stop_requested(); };
  options.on_notice = [terminal](const std::string& note) {
    fmt::print(stderr, "{}softreg: note: {}\n", terminal ? "\r\033[K" : "", note);
  };
  options.on_progress = [terminal](const DownloadProgress& p) {
    if (p.finished) {
      fmt::print(stderr, "{}{}: {} in {:.1f} s ({}/s) from {}, verified ({})\n", terminal ? "\r\033[K" : "",
                 p.file, megabytes(static_cast<double>(p.done)), p.seconds, megabytes(p.bytes_per_second),
                 p.url, describe(p.verified));
      return;
    }
    if (!terminal) return;  // a log gets the one line above per file
    const double left = static_cast<double>(p.total > p.done ? p.total - p.done : 0);
    const double fraction = p.total > 0 ? static_cast<double>(p.done) / static_cast<double>(p.total) : 0;
    constexpr int kBarWidth = 24;
    const int filled = static_cast<int>(std::min(1.0, fraction) * kBarWidth);
    fmt::print(stderr, "\r\033[K{:<27} [{:<{}}] {} / {}  {}/s  ETA {}", p.file, std::string(filled, '#'),
               kBarWidth, megabytes(static_cast<double>(p.done)), megabytes(static_cast<double>(p.total)),
               megabytes(p.bytes_per_second),
               p.bytes_per_second > 0 ? duration(left / p.bytes_per_second) : "?");
    std::fflush(stderr);
  };
  arm_stop_on_ctrl_c();
  DownloadReport report = download_dataset(dataset, folder, options);
  for (const DownloadedFile& f : report.files) {
    if (f.url.empty()) fmt::print(stderr, "{}: already there, verified ({})\n", f.name, describe(f.verified));
  }
  return report;
}

CommandRunner add_download_subcommand(CLI::App& data) {
  auto flags = std::make_shared<DownloadFlags>();
  CLI::App* cmd = data.add_subcommand(
      "download",
      "Download a data set by name, verify every file against its pinned SHA-256, write classes.txt");
  cmd->add_option("name", flags->name, "fashion-mnist, mnist or kmnist")->required();
  cmd->add_option("--to", flags->to,
                  "Folder for the files (default: ~/.cache/softreg/NAME, or $SOFTREG_DATA/NAME)");
  cmd->add_option(
      "--mirror", flags->mirrors,
      "Base URL to fetch the files from, tried in order (repeatable; replaces the built-in mirrors)");
  cmd->add_option("--connect-timeout", flags->connect_timeout, "Seconds to wait for a connection, 1 to 600")
      ->capture_default_str();
  cmd->add_option("--stall-timeout", flags->stall_timeout,
                  "Seconds without data before a transfer is abandoned, 1 to 3600")
      ->capture_default_str();
  cmd->add_option("--retries", flags->retries, "Further tries of a mirror after a transient failure, 0 to 20")
      ->capture_default_str();
  return [flags, cmd] {
    if (!cmd->parsed()) return -1;  // not this subcommand
    check_range("--connect-timeout", flags->connect_timeout, 1, 600);
    check_range("--stall-timeout", flags->stall_timeout, 1, 3600);
    if (flags->retries < 0 || flags->retries > 20)
      throw UsageError(fmt::format("--retries must be between 0 and 20, got {}", flags->retries));
    for (const std::string& mirror : flags->mirrors) {
      if (mirror.rfind("http://", 0) != 0 && mirror.rfind("https://", 0) != 0 &&
          mirror.rfind("file://", 0) != 0)
        throw UsageError(
            fmt::format("--mirror must be an http://, https:// or file:// URL, got '{}'", mirror));
    }
    const KnownDataset& dataset = known_dataset(flags->name);
    const std::filesystem::path folder =
        flags->to.empty() ? default_download_folder(dataset) : std::filesystem::path(flags->to);
    DownloadOptions options;
    options.mirrors = flags->mirrors;
    options.connect_timeout_seconds = flags->connect_timeout;
    options.stall_timeout_seconds = flags->stall_timeout;
    options.retries = static_cast<int>(flags->retries);
    try {
      download_with_progress(dataset, folder, options);
    } catch (const DownloadInterrupted&) {
      fmt::print(stderr, "\nsoftreg: download interrupted; nothing unverified was left in {}\n",
                 folder.string());
      return interrupted_exit_code();
    }
    fmt::print("{}: the four files verified and classes.txt written in {}\n", dataset.name, folder.string());
    return kExitOk;
  };
}

}  // namespace softreg::cli
