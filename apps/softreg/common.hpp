// Pieces several subcommands share: option validation and the data folder option.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <optional>
#include <string>

namespace softreg::cli {

/// Upper bound that only catches typos; nothing in the code needs it.
inline constexpr long long kMaxThreads = 1024;

/// Throws UsageError unless 1 <= threads <= kMaxThreads.
void check_threads(long long threads);

/// An empty string means "not given".
std::optional<std::filesystem::path> optional_path(const std::string& text);

/// Adds --data with the search order in its help text.
CLI::Option* add_data_option(CLI::App& cmd, std::string& target);

}  // namespace softreg::cli
