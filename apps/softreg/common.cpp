// Shared option handling.
#include "common.hpp"

#include "commands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <thread>

#include "softreg/dataset.hpp"
#include "softreg/download.hpp"
#include "softreg/error.hpp"

namespace softreg::cli {
namespace {

std::atomic<bool> g_stop_requested{false};
std::atomic<int> g_stop_signal{SIGINT};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the signal handler needs lock-free flags");

extern "C" void on_stop_signal(int signal_number) {
  g_stop_signal.store(signal_number);
  g_stop_requested.store(true);
  std::signal(signal_number, SIG_DFL);  // a second Ctrl-C (or SIGTERM) stops at once
}

}  // namespace

void arm_stop_on_ctrl_c() {
  g_stop_requested = false;
  g_stop_signal = SIGINT;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

int interrupted_exit_code() {
  return 128 + g_stop_signal.load();
}

bool stop_requested() {
  return g_stop_requested.load();
}

void wait_for_stop_request() {
  while (!stop_requested())
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

void disarm_stop_on_ctrl_c() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

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
      "An IDX folder (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
      "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], optional classes.txt), an image folder "
      "(train/<class>/*.png|jpg, test/<class>/...) or a .npz (x_train, y_train, x_test, y_test) (default: "
      "$SOFTREG_DATA, "
      "./data/fashion-mnist, ~/.cache/softreg/fashion-mnist, /usr/share/datasets/fashion-mnist)");
}

std::string DataSourceFlags::first_given() const {
  const std::pair<const char*, bool> flags[] = {
      {"--data", !data.empty()},
      {"--dataset", !dataset.empty()},
      {"--train-features", !train_features.empty()},
      {"--train-labels", !train_labels.empty()},
      {"--test-features", !test_features.empty()},
      {"--test-labels", !test_labels.empty()},
      {"--val-features", !val_features.empty()},
      {"--val-labels", !val_labels.empty()},
      {"--train-csv", !train_csv.empty()},
      {"--test-csv", !test_csv.empty()},
      {"--val-csv", !val_csv.empty()},
      {"--label-column", !label_column.empty()},
      {"--ignore-columns", !ignore_columns.empty()},
      {"--classes", classes.has_value()},
      {"--test-fraction", test_fraction != 0},
      {"--image-size", !image_size.empty()},
      {"--skip-bad-images", skip_bad_images},
  };
  for (const auto& [flag, is_given] : flags) {
    if (is_given) return flag;
  }
  return {};
}

bool DataSourceFlags::given() const {
  return !first_given().empty();
}

DataSource DataSourceFlags::source(std::uint64_t seed, int threads) const {
  DataSource s;
  s.data = optional_path(data);
  if (!dataset.empty()) s.dataset = known_dataset(dataset).name;  // an unknown name is a usage error
  s.train_features = train_features;
  s.train_labels = train_labels;
  s.test_features = test_features;
  s.test_labels = test_labels;
  s.val_features = val_features;
  s.val_labels = val_labels;
  s.train_csv = train_csv;
  s.test_csv = test_csv;
  s.val_csv = val_csv;
  s.label_column = label_column;
  s.ignore_columns = ignore_columns;
  // Their ranges are load_data's to check; here only what does not fit the library's int.
  if (classes && (*classes < 2 || *classes > kMaxClasses)) {
    throw UsageError(fmt::format("--classes must be between 2 and {}, got {}", kMaxClasses, *classes));
  }
  s.classes = static_cast<int>(classes.value_or(0));  // the library's 0: from the labels
  s.test_fraction = test_fraction;
  s.seed = seed;
  s.skip_bad_images = skip_bad_images;
  s.threads = threads;
  const bool arrays = !train_features.empty() || !test_features.empty() || !train_labels.empty() ||
                      !test_labels.empty() || !val_features.empty() || !val_labels.empty();
  const bool csv = !train_csv.empty() || !test_csv.empty() || !val_csv.empty();
  if (static_cast<int>(arrays) + static_cast<int>(csv) + static_cast<int>(!data.empty()) > 1) {
    throw UsageError(
        "give one kind of data: --data, the --*-features/--*-labels files, or the --*-csv files");
  }
  if (!dataset.empty() && (arrays || csv))
    throw UsageError("--dataset names IDX files: it does not go with --*-features or --*-csv");
  if (!label_column.empty() && !csv)
    throw UsageError("--label-column applies to --train-csv/--test-csv only");
  if (!ignore_columns.empty() && train_csv.empty())
    throw UsageError(
        "--ignore-columns applies to --train-csv (tables read beside it, and a model's, are matched by "
        "column name)");
  if (!image_size.empty()) {
    int h = 0, w = 0;
    const auto x = image_size.find('x');
    const auto parse = [](std::string_view text, int& out) {
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
      return ec == std::errc() && end == text.data() + text.size() && !text.empty();
    };
    if (x == std::string::npos || !parse(std::string_view(image_size).substr(0, x), h) ||
        !parse(std::string_view(image_size).substr(x + 1), w) || h < 1 || w < 1 || h > 4096 || w > 4096) {
      throw UsageError(fmt::format(
          "--image-size must be HxW with sides from 1 to 4096 (e.g. 28x28), got '{}'", image_size));
    }
    s.image_height = h;
    s.image_width = w;
  }
  return s;
}

std::optional<DataSource> optional_source(const DataSourceFlags& flags, int threads) {
  if (!flags.given()) return std::nullopt;
  return flags.source(/*seed=*/0, threads);
}

void add_data_source_options(CLI::App& cmd, DataSourceFlags& flags) {
  add_data_option(cmd, flags.data);
  const std::string group = "Data";
  cmd.add_option("--dataset", flags.dataset,
                 "A data set by name (fashion-mnist, mnist, kmnist), where `softreg data download` puts it")
      ->group(group);
  cmd.add_option("--train-features", flags.train_features,
                 "Training features: a 2-D .npy (floats or integers; uint8 as pixels, scaled by 1/255)")
      ->group(group);
  cmd.add_option("--train-labels", flags.train_labels, "Training labels: a 1-D .npy of integers or strings")
      ->group(group);
  cmd.add_option("--test-features", flags.test_features,
                 "Test features (.npy); for eval, alone with --test-labels: new rows for the model")
      ->group(group);
  cmd.add_option("--test-labels", flags.test_labels, "Test labels (.npy)")->group(group);
  cmd.add_option("--val-features", flags.val_features,
                 "Validation features (.npy), in place of --val-fraction's held-out rows")
      ->group(group);
  cmd.add_option("--val-labels", flags.val_labels, "Validation labels (.npy)")->group(group);
  cmd.add_option("--train-csv", flags.train_csv,
                 "Training rows: CSV (or tab- or semicolon-separated), a label column and numeric features")
      ->group(group);
  cmd.add_option("--test-csv", flags.test_csv, "Test rows (CSV); for eval, alone: new rows for the model")
      ->group(group);
  cmd.add_option("--val-csv", flags.val_csv,
                 "Validation rows (CSV), in place of --val-fraction's held-out rows")
      ->group(group);
  cmd.add_option("--label-column", flags.label_column,
                 "CSV label column, by name or 0-based index, negative from the end (-1: the last) "
                 "(default: 0; for eval and predict, the model's)")
      ->group(group);
  cmd.add_option(
         "--ignore-columns", flags.ignore_columns,
         "CSV columns not to read as features (an id, a date), by name or 0-based index, comma-separated; "
         "the training table needs a header")
      ->delimiter(',')
      ->group(group);
  cmd.add_option("--classes", flags.classes, "Number of classes (default: from the labels)")->group(group);
  cmd.add_option("--test-fraction", flags.test_fraction,
                 "Hold out this fraction of the training data (seeded, stratified) when there is no test set")
      ->group(group);
  cmd.add_option(
         "--image-size", flags.image_size,
         "Image folders: resize every image to HxW (default: the images' size, or 28x28 if they differ)")
      ->group(group);
  cmd.add_flag("--skip-bad-images", flags.skip_bad_images,
               "Image folders: pass over unreadable images, counted")
      ->group(group);
}

RunOptions run_options_for(const std::filesystem::path& folder, const LoadedData& loaded,
                           const DataSource& source, bool pictures, double seconds_load,
                           std::chrono::steady_clock::time_point started) {
  RunOptions options;
  options.folder = folder;
  options.data_folder = loaded.folder.string();
  options.data_source = source_to_json(source);
  options.live_curves = pictures;
  options.seconds_load = seconds_load;
  options.started = started;
  return options;
}

void warn_of_more_threads_than_cores(int threads) {
  const int cores = hardware_threads();
  if (threads <= cores) return;
  fmt::print(stderr,
             "softreg: warning: --threads {} is more than the {} cores here: slower than --threads {}\n",
             threads, cores, cores);
}

void print_data_notes(const LoadedData& loaded) {
  for (const std::string& note : loaded.notes)
    fmt::print(stderr, "softreg: note: {}\n", note);
}

void warn_of_classes_without_training_rows(const Dataset& train) {
  const std::vector<std::int64_t> rows = examples_per_class(train);
  std::vector<std::string> unseen;
  for (std::size_t k = 0; k < rows.size(); ++k) {
    if (rows[k] == 0)
      unseen.push_back(k < train.class_names.size() ? train.class_names[k] : std::to_string(k));
  }
  if (unseen.empty()) return;
  constexpr std::size_t kNamed = 5;
  const std::size_t named = std::min(unseen.size(), kNamed);
  // Labels counted from 1 (R, MATLAB, many exported tables) leave class 0 empty: said, since numbers are
  // class numbers here.
  const bool counted_from_one = rows.size() > 1 && rows[0] == 0 && unseen.size() == 1 &&
                                (train.class_names.empty() || train.class_names[0] == "0");
  fmt::print(stderr, "softreg: warning: {} class{} no training rows, so the model cannot learn {}: {}{}{}\n",
             unseen.size(), unseen.size() == 1 ? " has" : "es have", unseen.size() == 1 ? "it" : "them",
             fmt::join(unseen.begin(), unseen.begin() + static_cast<std::ptrdiff_t>(named), ", "),
             unseen.size() > named ? fmt::format(" and {} more", unseen.size() - named) : "",
             counted_from_one ? " (labels that are numbers are class numbers from 0: labels counted from 1 "
                                "leave class 0 empty)"
                              : "");
}

void add_check_flags(CLI::App& cmd, bool& check, bool& no_check, const std::string& what) {
  CLI::Option* on = cmd.add_flag("--check", check,
                                 "Run the seed's acceptance checks" + what +
                                     " on any data, not only on Fashion-MNIST (train loss < 0.5, train and "
                                     "test accuracy > 0.7; exit 1 when one fails)");
  cmd.add_flag("--no-check", no_check, "Skip the seed's acceptance checks" + what + " on Fashion-MNIST")
      ->excludes(on);
}

bool acceptance_checks_wanted(const LoadedData& loaded, bool check, bool no_check) {
  // The thresholds are the seed's, for its recipe on its data: on a user's 1,000 classes or hard photos
  // a good model may well have a loss above 0.5, and a run that trained as asked must not exit 1.
  return check || (loaded.seed_data && !no_check);
}

int report_failed_checks(const RunReport& report) {
  if (report.failed_checks.empty()) return kExitOk;
  std::string failed;
  for (const AcceptanceCheck& c : report.failed_checks)
    failed += fmt::format("{}{} (got {:.4f})", failed.empty() ? "" : ", ", c.name, c.value);
  fmt::print(stderr, "softreg: acceptance check failed: {}\n", failed);
  return kExitFailure;
}

}  // namespace softreg::cli
