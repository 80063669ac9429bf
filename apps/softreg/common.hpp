// Pieces several subcommands share: option validation and the data folder option.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "softreg/clock.hpp"
#include "softreg/run.hpp"
#include "softreg/sources.hpp"

namespace softreg::cli {

/// Ctrl-C as a request to stop at the next safe point: after arm_stop_on_ctrl_c(), the first SIGINT
/// makes stop_requested() true (a second one ends the process at once); disarm restores the default.
/// SIGTERM asks the same: a job scheduler, `docker stop` or a service manager stopping a run gets its
/// checkpoint written at the stop, as Ctrl-C does.
void arm_stop_on_ctrl_c();
bool stop_requested();
void disarm_stop_on_ctrl_c();
/// The conventional exit status of a program stopped by the signal that asked: 130 (SIGINT) or 143
/// (SIGTERM).
int interrupted_exit_code();

/// Upper bound that only catches typos; nothing in the code needs it.
inline constexpr long long kMaxThreads = 1024;

/// Throws UsageError unless 1 <= threads <= kMaxThreads.
void check_threads(long long threads);

/// An empty string means "not given".
std::optional<std::filesystem::path> optional_path(const std::string& text);

inline constexpr const char* kModelOptionHelp =
    "A model.safetensors written by softreg train, or the run folder that holds it";

/// Adds --data with the search order in its help text.
CLI::Option* add_data_option(CLI::App& cmd, std::string& target);

/// The flags that say where data comes from: --data (IDX folder, image folder or .npz), NPY files,
/// CSV files, --label-column, --ignore-columns, --classes, --test-fraction, --image-size, --skip-bad-images.
struct DataSourceFlags {
  std::string data;
  std::string dataset;
  std::string train_features, train_labels, test_features, test_labels, val_features, val_labels;
  std::string train_csv, test_csv, val_csv, label_column;
  std::vector<std::string> ignore_columns;
  std::optional<long long> classes;  // not given: from the labels (0 given is a usage error)
  double test_fraction = 0;
  std::string image_size;
  bool skip_bad_images = false;

  /// True when any of the flags was given.
  bool given() const;
  /// The first of the flags given ("--data"), or "" when none was.
  std::string first_given() const;
  /// The source the flags name (--image-size parsed; a UsageError names a bad value).
  DataSource source(std::uint64_t seed, int threads) const;
};
void add_data_source_options(CLI::App& cmd, DataSourceFlags& flags);
/// The source the flags name, or nullopt when none was given (then the model's own record is used).
std::optional<DataSource> optional_source(const DataSourceFlags& flags, int threads);

/// How train and tune keep a run folder: data recorded as loaded, live curves unless pictures are off.
RunOptions run_options_for(const std::filesystem::path& folder, const LoadedData& loaded,
                           const DataSource& source, bool pictures, double seconds_load,
                           std::chrono::steady_clock::time_point started);

/// Prints the dashboard's address on `out` (and on stderr a warning when other machines can reach it).
void announce_dashboard(std::FILE* out, const std::string& url, const std::string& host,
                        const std::string& runs);

/// Waits, polling every 100 ms, until stop_requested() (arm_stop_on_ctrl_c first).
void wait_for_stop_request();

/// One line on stderr when classes have no training rows (a class only in the test set, or --classes
/// above the labels): the model cannot learn them, and every test row of theirs counts as wrong.
void warn_of_classes_without_training_rows(const Dataset& train);
/// The data's notes on stderr, a line each (softreg: note: ...): what the loader left out and why.
void print_data_notes(const LoadedData& loaded);
/// A warning on stderr when --threads asks for more threads than the machine has cores: they take turns
/// on the cores and wait for each other at every batch (64 threads on 2 cores: an epoch 5 times slower).
void warn_of_more_threads_than_cores(int threads);

/// --check and --no-check (`what` ends their help, e.g. " on the refit").
void add_check_flags(CLI::App& cmd, bool& check, bool& no_check, const std::string& what = "");
/// Whether a run on `loaded` takes the seed's acceptance checks: on the seed's data (Fashion-MNIST)
/// unless --no-check, on any other data only with --check.
bool acceptance_checks_wanted(const LoadedData& loaded, bool check, bool no_check);

/// Prints the failed acceptance checks of `report` as one line on stderr; returns the exit code
/// (kExitFailure when any failed, else kExitOk).
int report_failed_checks(const RunReport& report);

}  // namespace softreg::cli
