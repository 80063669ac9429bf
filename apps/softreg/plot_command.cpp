// softreg plot: (re)draws the pictures of a run folder from its model.safetensors and metrics.csv (and
// a tune refit's chart from its tune.json), e.g. with more images in the prediction grid or only the
// misclassified ones.
#include <fmt/format.h>

#include "commands.hpp"
#include "common.hpp"
#include "softreg/error.hpp"
#include "softreg/parallel.hpp"
#include "softreg/run.hpp"
#include "tune_record.hpp"

namespace softreg::cli {
namespace {

struct PlotOptions {
  std::string run;
  std::string out;
  DataSourceFlags data;
  long long grid_count = 6;
  bool misclassified = false;
  long long threads = hardware_threads();
};

int run_plot(const PlotOptions& options) {
  if (options.grid_count < 1) throw UsageError(fmt::format("--n must be >= 1, got {}", options.grid_count));
  check_threads(options.threads);
  const std::filesystem::path run = options.run;
  const std::filesystem::path out = options.out.empty() ? run : std::filesystem::path(options.out);
  ThreadPool pool(static_cast<int>(options.threads));
  std::vector<std::string> written =
      redraw_run_pictures(run, out, optional_source(options.data, static_cast<int>(options.threads)),
                          {static_cast<int>(options.grid_count), options.misclassified}, pool);
  // The refit of `softreg tune` also has its sweep's chart, drawn from tune.json's trials.
  std::error_code ec;
  if (std::filesystem::is_regular_file(run / "tune.json", ec)) {
    const TuneRecord record = read_tune_record(run / "tune.json");
    draw_tune(out, record.result, record.with_lr);
    written.insert(written.end(), {"tune.png", "tune.svg"});
  }
  fmt::print("wrote {} in {}\n", fmt::join(written, ", "), out.string());
  return kExitOk;
}

}  // namespace

CommandRunner add_plot_command(CLI::App& app) {
  auto options = std::make_shared<PlotOptions>();
  CLI::App* cmd =
      app.add_subcommand("plot", "Draw the pictures of a run: curves, predictions, confusion, weights");
  cmd->add_option("run", options->run, "Run folder (holding model.safetensors and metrics.csv)")->required();
  cmd->add_option("--out", options->out, "Folder for the pictures (default: the run folder)");
  add_data_source_options(*cmd, options->data);
  cmd->add_option("--n", options->grid_count, "Test images in predictions.png")->capture_default_str();
  cmd->add_flag("--misclassified", options->misclassified, "predictions.png shows only wrong predictions");
  cmd->add_option("--threads", options->threads, "Threads (default: all cores)")->capture_default_str();
  return [options] { return run_plot(*options); };
}

}  // namespace softreg::cli
