// softreg eval: a saved model on the test (or train) split: loss, accuracy with its standard error,
// per-class precision/recall/F1 and the confusion matrix, as a table or one JSON object.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "softreg/inference.hpp"
#include "softreg/metrics.hpp"

namespace softreg::cli {
namespace {

// The most classes whose confusion matrix is printed as a table.
constexpr std::size_t kMaxConfusionColumns = 30;

struct EvalOptions {
  std::string model;
  DataSourceFlags data;
  std::string split = "test";
  long long threads = hardware_threads();
  bool json = false;
};

int run_eval(const EvalOptions& options) {
  check_threads(options.threads);
  const ModelFile model = load_model(model_file_or_run_folder(options.model));
  const SplitData split = load_split_for_model(
      model, optional_source(options.data, static_cast<int>(options.threads)), options.split);
  const std::string folder = split.folder.string();
  ThreadPool pool(static_cast<int>(options.threads));
  const ModelEvaluation result = evaluate_model(model.model, split.data, pool);
  const Evaluation& evaluation = result.evaluation;
  const ClassificationReport& report = result.report;
  std::vector<std::int64_t> rows_per_class;
  for (const ClassMetrics& c : report.per_class)
    rows_per_class.push_back(c.support);
  const MajorityClass majority = majority_class(rows_per_class);

  if (options.json) {
    nlohmann::ordered_json j;
    j["model"] = options.model;
    j["data"] = folder;
    j["split"] = options.split;
    j["count"] = report.count;
    j["loss"] = evaluation.loss;
    j["accuracy"] = report.accuracy;
    j["accuracy_stderr"] = report.accuracy_stderr;
    j["majority_class"] = majority.label;
    j["majority_share"] = majority.share;
    auto per_class = nlohmann::ordered_json::array();
    for (std::size_t k = 0; k < report.per_class.size(); ++k) {
      const ClassMetrics& c = report.per_class[k];
      per_class.push_back({{"class", k},
                           {"name", model.class_names[k]},
                           {"precision", c.precision},
                           {"recall", c.recall},
                           {"f1", c.f1},
                           {"support", c.support}});
    }
    j["per_class"] = per_class;
    j["confusion"] = report.confusion;
    fmt::print("{}\n", j.dump());
    return kExitOk;
  }

  fmt::print("model: {} ({} classes, {})\n", options.model, model.model.classes(),
             model.input == InputKind::kImages
                 ? fmt::format("{}x{} images", model.height, model.width)
                 : fmt::format("{} {} features", model.model.inputs(), element_name(model.element)));
  fmt::print("data: {}, {} split, {} examples\n", folder, options.split, report.count);
  fmt::print("loss {:.4f}   accuracy {:.4f} ± {:.4f} (standard error)\n", evaluation.loss, report.accuracy,
             report.accuracy_stderr);
  // What a model that learned nothing scores (scikit-learn's DummyClassifier), to read the accuracy against.
  fmt::print("always answering {}, the most common class here, would score {:.4f}{}\n\n",
             quoted_class_name(majority.label, model.class_names), majority.share,
             no_better_than_majority(report.accuracy, rows_per_class) ? ": this model does no better" : "");
  std::size_t name_width = 5;
  for (const auto& name : model.class_names)
    name_width = std::max(name_width, name.size());
  fmt::print("{:<{}}  {:>9}  {:>6}  {:>6}  {:>7}\n", "class", name_width, "precision", "recall", "f1",
             "support");
  for (std::size_t k = 0; k < report.per_class.size(); ++k) {
    const ClassMetrics& c = report.per_class[k];
    fmt::print("{:<{}}  {:>9.4f}  {:>6.4f}  {:>6.4f}  {:>7}\n", model.class_names[k], name_width, c.precision,
               c.recall, c.f1, c.support);
  }
  std::size_t row_label_width = 0;
  for (std::size_t k = 0; k < model.class_names.size(); ++k) {
    row_label_width = std::max(row_label_width, fmt::format("{} {}", k, model.class_names[k]).size());
  }
  if (report.confusion.size() > kMaxConfusionColumns) {
    fmt::print("\nconfusion matrix: {} x {}, too wide for a terminal; --json has it\n",
               report.confusion.size(), report.confusion.size());
    return kExitOk;
  }
  fmt::print("\nconfusion matrix (rows: true class, columns: predicted class)\n{:<{}}", "", row_label_width);
  for (std::size_t k = 0; k < report.confusion.size(); ++k)
    fmt::print(" {:>5}", k);
  fmt::print("\n");
  for (std::size_t t = 0; t < report.confusion.size(); ++t) {
    fmt::print("{:<{}}", fmt::format("{} {}", t, model.class_names[t]), row_label_width);
    for (std::int64_t count : report.confusion[t])
      fmt::print(" {:>5}", count);
    fmt::print("\n");
  }
  return kExitOk;
}

}  // namespace

CommandRunner add_eval_command(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  CLI::App* cmd =
      app.add_subcommand("eval", "Evaluate a saved model: loss, accuracy, per-class metrics, confusion");
  cmd->add_option("--model", options->model, kModelOptionHelp)->required();
  add_data_source_options(*cmd, options->data);
  cmd->add_option("--split", options->split,
                  "Which split to evaluate on (val: the validation set given with the data, or the rows "
                  "--val-fraction held out)")
      ->check(CLI::IsMember({"train", "test", "val"}))
      ->capture_default_str();
  cmd->add_option("--threads", options->threads, "Threads (default: all cores)")->capture_default_str();
  cmd->add_flag("--json", options->json, "Print one JSON object instead of the table");
  return [options] { return run_eval(*options); };
}

}  // namespace softreg::cli
