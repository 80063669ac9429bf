// `softreg data download` and the download that `train --download` starts.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>

#include "commands.hpp"
#include "softreg/download.hpp"

namespace softreg::cli {

/// Downloads with a progress bar on a terminal (one line per file otherwise), notes on stderr, and
/// Ctrl-C as a stop (DownloadInterrupted).
DownloadReport download_with_progress(const KnownDataset& dataset, const std::filesystem::path& folder,
                                      const DownloadOptions& options = {});

/// Registers `download` under `data`; the runner returns -1 when another command was chosen.
CommandRunner add_download_subcommand(CLI::App& data);

}  // namespace softreg::cli
