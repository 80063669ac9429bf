// The subcommands of the softreg CLI. Each registers its options on a CLI11 app and returns the
// function that runs it after parsing; that function returns the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace softreg::cli {

/// Exit codes: 0 success, 1 error (bad file, failed acceptance check), 2 usage error, 130 interrupted.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

using CommandRunner = std::function<int()>;

CommandRunner add_train_command(CLI::App& app);
CommandRunner add_eval_command(CLI::App& app);
CommandRunner add_predict_command(CLI::App& app);
CommandRunner add_plot_command(CLI::App& app);
CommandRunner add_bench_command(CLI::App& app);
CommandRunner add_data_command(CLI::App& app);
CommandRunner add_tune_command(CLI::App& app);
CommandRunner add_serve_command(CLI::App& app);

}  // namespace softreg::cli
