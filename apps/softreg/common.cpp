// Shared option handling.
#include "common.hpp"

#include <fmt/format.h>

#include "softreg/error.hpp"

namespace softreg::cli {

void check_threads(long long threads) {
  if (threads < 1 || threads > kMaxThreads) {
    throw UsageError(fmt::format("--threads must be between 1 and {}, got {}", kMaxThreads, threads));
  }
}

std::optional<std::filesystem::path> optional_path(const std::string& text) {
  if (text.empty()) return std::nullopt;
  return std::filesystem::path(text);
}

CLI::Option* add_data_option(CLI::App& cmd, std::string& target) {
  return cmd.add_option(
      "--data", target,
      "Folder with train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
      "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] (default: $SOFTREG_DATA, "
      "./data/fashion-mnist, ~/.cache/softreg/fashion-mnist, /usr/share/datasets/fashion-mnist)");
}

}  // namespace softreg::cli
