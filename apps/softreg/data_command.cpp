// softreg data: where the data was found, what is in it (sizes, class balance, pixel statistics), and
// whether every file passes the checks: the first thing to run when `train` cannot find or read data.
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "softreg/dataset.hpp"
#include "softreg/idx.hpp"

namespace softreg::cli {
namespace {

struct DataOptions {
  std::string data;
  bool json = false;
};

int run_data(const DataOptions& options) {
  const DataFiles files = locate_data(optional_path(options.data));
  const auto start = std::chrono::steady_clock::now();
  const TrainTestData data = load_train_test(files);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const DatasetStats train = dataset_stats(data.train), test = dataset_stats(data.test);
  const std::filesystem::path cache = idx_cache_folder();

  if (options.json) {
    nlohmann::ordered_json j;
    j["folder"] = files.folder.string();
    j["files"] = {{"train_images", files.train_images.string()},
                  {"train_labels", files.train_labels.string()},
                  {"test_images", files.test_images.string()},
                  {"test_labels", files.test_labels.string()}};
    j["height"] = data.train.height;
    j["width"] = data.train.width;
    j["classes"] = data.train.num_classes;
    j["train"] = {
        {"count", data.train.count}, {"per_class", train.per_class}, {"mean_pixel", train.mean_pixel}};
    j["test"] = {{"count", data.test.count}, {"per_class", test.per_class}, {"mean_pixel", test.mean_pixel}};
    j["load_seconds"] = seconds;
    j["cache"] = cache.empty() ? "off" : cache.string();
    fmt::print("{}\n", j.dump(2));
    return kExitOk;
  }
  fmt::print("data: {} (all four files pass the checks)\n", files.folder.string());
  for (const auto& path : {files.train_images, files.train_labels, files.test_images, files.test_labels}) {
    fmt::print("  {}\n", path.string());
  }
  fmt::print("images: {}x{}, {} train, {} test; mean pixel {:.3f} (train), {:.3f} (test)\n",
             data.train.height, data.train.width, data.train.count, data.test.count, train.mean_pixel,
             test.mean_pixel);
  fmt::print("{:>3}  {:<10}  {:>7}  {:>6}\n", "", "class", "train", "test");
  const std::vector<std::string> names = default_class_names(data.train.num_classes);
  for (std::size_t k = 0; k < train.per_class.size(); ++k) {
    const std::string& name = names[k];
    fmt::print("{:>3}  {:<10}  {:>7}  {:>6}\n", k, name, train.per_class[k], test.per_class[k]);
  }
  fmt::print("loaded in {:.2f} s; decoded copies of .gz files: {}\n", seconds,
             cache.empty() ? "off (SOFTREG_CACHE=off)" : cache.string());
  return kExitOk;
}

}  // namespace

CommandRunner add_data_command(CLI::App& app) {
  auto options = std::make_shared<DataOptions>();
  CLI::App* cmd = app.add_subcommand("data", "Find the data, check every file and show what is in it");
  add_data_option(*cmd, options->data);
  cmd->add_flag("--json", options->json, "One JSON object instead of the table");
  return [options] { return run_data(*options); };
}

}  // namespace softreg::cli
