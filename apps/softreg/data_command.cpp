// softreg data: where the data was found, what is in it (sizes, class balance, pixel statistics), and
// whether every file passes the checks: the first thing to run when `train` cannot find or read data.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "download_command.hpp"
#include "softreg/dataset.hpp"
#include "softreg/download.hpp"
#include "softreg/idx.hpp"
#include "softreg/parallel.hpp"
#include "softreg/sources.hpp"

namespace softreg::cli {
namespace {

struct DataOptions {
  DataSourceFlags data;
  bool json = false;
};

// A known data set and where it is (the first of its folders holding all four files).
struct DatasetPresence {
  const KnownDataset* dataset;
  std::optional<DataFiles> files;
  std::uintmax_t bytes = 0;
};

std::vector<DatasetPresence> dataset_presence() {
  std::vector<DatasetPresence> out;
  for (const KnownDataset& set : known_datasets()) {
    DatasetPresence p{&set, find_dataset(set), 0};
    if (p.files) {
      std::error_code ec;
      for (const auto& path :
           {p.files->train_images, p.files->train_labels, p.files->test_images, p.files->test_labels}) {
        const auto size = std::filesystem::file_size(path, ec);
        if (!ec) p.bytes += size;
      }
    }
    out.push_back(p);
  }
  return out;
}

nlohmann::ordered_json datasets_json() {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const DatasetPresence& p : dataset_presence()) {
    nlohmann::ordered_json j;
    j["name"] = p.dataset->name;
    j["title"] = p.dataset->title;
    j["present"] = p.files.has_value();
    j["folder"] = p.files ? p.files->folder.string() : "";
    j["bytes"] = p.bytes;
    std::vector<std::string> looked;
    for (const auto& folder : dataset_folders(*p.dataset))
      looked.push_back(folder.string());
    j["looked_in"] = looked;
    list.push_back(j);
  }
  return list;
}

void print_datasets() {
  fmt::print("data sets by name (--dataset NAME; fetch with softreg data download NAME):\n");
  for (const DatasetPresence& p : dataset_presence()) {
    fmt::print(
        "  {:<14} {:<70} {}\n", p.dataset->name, p.dataset->title,
        p.files ? fmt::format("{} ({:.1f} MB)", p.files->folder.string(), static_cast<double>(p.bytes) / 1e6)
                : "not present");
  }
}

int run_data(const DataOptions& options) {
  const DataSource source = options.data.source(/*seed=*/0, hardware_threads());
  const std::string kind = source_kind(source);
  std::optional<DataFiles> files;
  if (kind == "idx") files = locate_idx_files(source);
  const auto start = std::chrono::steady_clock::now();
  const LoadedData loaded = load_data(source);
  const TrainTestData& data = loaded.data;
  const double seconds = seconds_since(start);
  const DatasetStats train = dataset_stats(data.train), test = dataset_stats(data.test);
  const std::filesystem::path cache = idx_cache_folder();
  const bool images = data.train.kind == InputKind::kImages;

  if (options.json) {
    nlohmann::ordered_json j;
    j["folder"] = loaded.folder.string();
    j["kind"] = kind;
    if (files) {
      j["files"] = {{"train_images", files->train_images.string()},
                    {"train_labels", files->train_labels.string()},
                    {"test_images", files->test_images.string()},
                    {"test_labels", files->test_labels.string()}};
    }
    j["input"] = images ? "images" : "features";
    j["dtype"] = element_name(data.train.element);
    j["height"] = data.train.height;
    j["width"] = data.train.width;
    j["features"] = data.train.features();
    j["feature_names"] = data.train.feature_names;
    j["label_name"] = data.train.label_name;
    j["classes"] = data.train.num_classes;
    j["class_names"] = data.train.class_names;
    j["train"] = {
        {"count", data.train.count}, {"per_class", train.per_class}, {"mean_pixel", train.mean_pixel}};
    j["test"] = {{"count", data.test.count}, {"per_class", test.per_class}, {"mean_pixel", test.mean_pixel}};
    if (data.validation) {
      const DatasetStats val = dataset_stats(*data.validation);
      j["validation"] = {{"count", data.validation->count},
                         {"per_class", val.per_class},
                         {"mean_pixel", val.mean_pixel},
                         {"file", loaded.validation_file.string()}};
    }
    j["skipped_images"] = loaded.skipped_images;
    j["notes"] = loaded.notes;
    j["load_seconds"] = seconds;
    j["cache"] = cache.empty() ? "off" : cache.string();
    j["datasets"] = datasets_json();
    fmt::print("{}\n", j.dump(2));
    return kExitOk;
  }
  if (!options.data.given()) print_datasets();
  if (files) {
    fmt::print("data: {} (all four files pass the checks)\n", files->folder.string());
    for (const auto& path :
         {files->train_images, files->train_labels, files->test_images, files->test_labels}) {
      fmt::print("  {}\n", path.string());
    }
  } else {
    fmt::print("data: {} ({}; {})\n", loaded.folder.string(), kind,
               loaded.skipped_images > 0
                   ? fmt::format("every other file passes the checks, {} unreadable image{} skipped",
                                 loaded.skipped_images, loaded.skipped_images == 1 ? "" : "s")
                   : "every file passes the checks");
  }
  for (const std::string& note : loaded.notes)
    fmt::print("note: {}\n", note);
  if (images) {
    fmt::print("images: {}x{}, {} train, {} test; mean pixel {:.3f} (train), {:.3f} (test)\n",
               data.train.height, data.train.width, data.train.count, data.test.count, train.mean_pixel,
               test.mean_pixel);
  } else {
    fmt::print("features: {} {} a row, {} train, {} test; mean value {:.3f} (train), {:.3f} (test)\n",
               data.train.features(), element_name(data.train.element), data.train.count, data.test.count,
               train.mean_pixel, test.mean_pixel);
    // A table's columns as read (row names and columns ignored left out), so a wrong one shows here.
    const std::vector<std::string>& names = data.train.feature_names;
    constexpr std::size_t kShown = 12;
    if (!names.empty()) {
      const std::size_t shown = std::min(names.size(), kShown);
      fmt::print("columns: {}{}{}\n",
                 fmt::join(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
                 names.size() > shown ? fmt::format(" and {} more", names.size() - shown) : "",
                 data.train.label_name.empty() ? "" : fmt::format("; labels: {}", data.train.label_name));
    }
  }
  std::size_t name_width = 5;
  for (const std::string& name : data.train.class_names)
    name_width = std::max(name_width, name.size());
  fmt::print("{:>3}  {:<{}}  {:>7}  {:>6}\n", "", "class", name_width, "train", "test");
  for (std::size_t k = 0; k < train.per_class.size(); ++k) {
    fmt::print("{:>3}  {:<{}}  {:>7}  {:>6}\n", k, data.train.class_names[k], name_width, train.per_class[k],
               test.per_class[k]);
  }
  if (data.validation) {
    fmt::print("validation: {} rows in {} (scored every epoch; early stopping and tune use it)\n",
               data.validation->count, loaded.validation_file.string());
  }
  fmt::print("loaded in {:.2f} s; decoded copies of .gz files, image folders and large CSV tables: {}\n",
             seconds, cache.empty() ? "off (SOFTREG_CACHE=off)" : cache.string());
  return kExitOk;
}

}  // namespace

CommandRunner add_data_command(CLI::App& app) {
  auto options = std::make_shared<DataOptions>();
  CLI::App* cmd = app.add_subcommand("data", "Find the data, check every file and show what is in it");
  add_data_source_options(*cmd, options->data);
  cmd->add_flag("--json", options->json, "One JSON object instead of the table");
  CommandRunner download = add_download_subcommand(*cmd);
  return [options, download] {
    if (const int code = download(); code >= 0) return code;
    return run_data(*options);
  };
}

}  // namespace softreg::cli
