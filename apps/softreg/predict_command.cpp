// softreg predict: the top-k classes of test images (--index) or of the user's own image files, which are
// converted to grayscale and resized to the model's input size by area averaging.
#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "softreg/error.hpp"
#include "softreg/inference.hpp"

namespace softreg::cli {
namespace {

struct PredictOptions {
  std::string model;
  DataSourceFlags data;
  std::string index;
  std::vector<std::string> images;
  long long top = 3;
  bool invert = false;
  bool json = false;
};

struct IndexRange {
  std::size_t first = 0;
  std::size_t last = 0;  // inclusive
};

// "I" or "I..J" (inclusive).
IndexRange parse_index_range(const std::string& text) {
  const auto parse = [&](std::string_view part) {
    std::size_t value = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size()) {
      throw UsageError("--index must be I or I..J with whole numbers, got '" + text + "'");
    }
    return value;
  };
  const std::size_t dots = text.find("..");
  IndexRange range;
  range.first = parse(std::string_view(text).substr(0, dots));
  range.last = dots == std::string::npos ? range.first : parse(std::string_view(text).substr(dots + 2));
  if (range.last < range.first) throw UsageError("--index range '" + text + "' is empty (J < I)");
  return range;
}

void print_prediction(const Prediction& p, const ModelFile& model, std::size_t top, bool json) {
  const std::vector<int> order = p.top(top);
  if (json) {
    nlohmann::ordered_json j;
    j["input"] = p.input;
    if (p.label) j["label"] = *p.label;
    auto list = nlohmann::ordered_json::array();
    for (int k : order) {
      list.push_back({{"class", k},
                      {"name", model.class_names[static_cast<std::size_t>(k)]},
                      {"prob", p.probabilities[static_cast<std::size_t>(k)]}});
    }
    j["top"] = list;
    fmt::print("{}\n", j.dump());
  } else {
    std::string line = p.input + ":";
    for (int k : order) {
      line += fmt::format(" {} {:.3f}", model.class_names[static_cast<std::size_t>(k)],
                          p.probabilities[static_cast<std::size_t>(k)]);
      if (k != order.back()) line += ",";
    }
    if (p.label) {
      line += fmt::format("  (true: {}{})", model.class_names[static_cast<std::size_t>(*p.label)],
                          *p.label == order.front() ? "" : ", wrong");
    }
    fmt::print("{}\n", line);
  }
  std::fflush(stdout);
}

int run_predict(const PredictOptions& options) {
  if (options.index.empty() && options.images.empty()) {
    throw UsageError(
        "give image files (or, for a model trained on features, .npy/.csv files) to predict, "
        "or --index I..J for test rows");
  }
  if (options.top < 1) throw UsageError(fmt::format("--top must be >= 1, got {}", options.top));
  std::optional<IndexRange> range;
  if (!options.index.empty()) range = parse_index_range(options.index);
  if (!range) {
    // The data flags choose the data of --index's rows; ignoring them would predict other rows than meant.
    DataSourceFlags rows_flags = options.data;
    rows_flags.label_column.clear();  // a feature model's CSV files may name their label column
    if (const std::string flag = rows_flags.first_given(); !flag.empty()) {
      throw UsageError(flag +
                       " chooses the data of --index's test rows; the files given to predict need none");
    }
  }
  if (options.invert && options.images.empty())
    throw UsageError("--invert applies to image files, not to --index's test rows");

  const ModelFile model = load_model(model_file_or_run_folder(options.model));
  if (options.invert && model.input == InputKind::kFeatures)
    throw UsageError("--invert applies to image files; this model was trained on feature rows");
  if (!range && !options.data.label_column.empty() && model.input != InputKind::kFeatures)
    throw UsageError("--label-column applies to CSV files of feature rows; this model was trained on images");
  const auto top = static_cast<std::size_t>(options.top);

  if (range) {
    const Dataset test = load_split_for_model(model, optional_source(options.data, 1), "test").data;
    if (range->last >= test.count) {
      throw UsageError(
          fmt::format("--index {} is past the last test image ({})", options.index, test.count - 1));
    }
    for (const Prediction& p : predict_rows(model.model, test, range->first, range->last))
      print_prediction(p, model, top, options.json);
  }

  int failures = 0;
  const auto predict_file = [&](const std::filesystem::path& path) {
    try {
      if (model.input == InputKind::kFeatures) {
        for (const Prediction& p : predict_feature_file(model, path, options.data.label_column))
          print_prediction(p, model, top, options.json);
        return;
      }
      print_prediction(predict_image_file(model, path, options.invert), model, top, options.json);
    } catch (const Error& e) {
      // One bad file does not stop the others; the exit code reports it.
      fmt::print(stderr, "softreg: error: {}\n", e.what());
      ++failures;
    }
  };
  for (const std::string& input : options.images) {
    std::error_code ec;
    if (model.input == InputKind::kImages && std::filesystem::is_directory(input, ec)) {
      // A folder of images: each of them, at any depth, in path order.
      std::vector<std::filesystem::path> files;
      try {
        files = image_files_under(input);
        if (files.empty()) throw Error::in_file(input, "holds no images (.png, .jpg, ...)");
      } catch (const Error& e) {
        fmt::print(stderr, "softreg: error: {}\n", e.what());
        ++failures;
      }
      for (const std::filesystem::path& file : files)
        predict_file(file);
      continue;
    }
    predict_file(input);
  }
  return failures > 0 ? kExitFailure : kExitOk;
}

}  // namespace

CommandRunner add_predict_command(CLI::App& app) {
  auto options = std::make_shared<PredictOptions>();
  CLI::App* cmd = app.add_subcommand(
      "predict", "Predict the class of test rows, of your own image files or of feature rows");
  cmd->add_option("--model", options->model, kModelOptionHelp)->required();
  cmd->add_option(
      "inputs", options->images,
      "Image files (PNG, JPEG, WebP, BMP, PGM, ...) or folders of them, any size and colour; for a model "
      "trained on features, .npy or .csv files of feature rows");
  cmd->add_option("--index", options->index, "Test images I or I..J (inclusive), by index");
  add_data_source_options(*cmd, options->data);
  cmd->add_option("--top", options->top, "How many classes to show per input")->capture_default_str();
  cmd->add_flag(
      "--invert", options->invert,
      "Invert the images (for dark objects on a light background; Fashion-MNIST is light on black)");
  cmd->add_flag("--json", options->json, "One JSON object per input, one per line");
  return [options] { return run_predict(*options); };
}

}  // namespace softreg::cli
