// The one error type softreg throws for user and I/O errors. Its message is a single line that names
// the file or flag, what was expected and what was found, so the CLI can print it as it is.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace softreg {

/// A user or I/O error: bad input file, bad flag value, missing data. The message is one line.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}

  /// An error about one file: "<path>: <what>".
  static Error in_file(const std::filesystem::path& path, const std::string& what);
};

/// Training stopped because the loss ran away: a batch's mean loss was not finite or far above the
/// ln(classes) a fresh model starts from. The weights are no longer usable; what was saved before is.
class TrainingDiverged : public Error {
 public:
  TrainingDiverged(int epoch, std::size_t batch, double mean_loss, double lr, int classes);
  int epoch;          // 1-based
  std::size_t batch;  // 1-based, within the epoch
  double mean_loss;
  double lr;
};

/// A command-line usage error (bad flag or value); the CLI exits with code 2 for these.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error(message) {}
};

}  // namespace softreg
