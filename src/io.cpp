// Run folder and report files.
#include "softreg/io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>

#include "softreg/error.hpp"
#include "softreg/idx.hpp"

namespace softreg {
namespace fs = std::filesystem;

void ensure_folder(const fs::path& folder) {
  std::error_code ec;
  if (fs::exists(folder, ec) && !fs::is_directory(folder, ec))
    throw Error::in_file(folder, "exists and is not a folder");
  fs::create_directories(folder, ec);
  if (ec) throw Error::in_file(folder, "cannot create folder: " + ec.message());
}

void check_folder_for_new_run(const fs::path& folder) {
  std::error_code ec;
  if (fs::exists(folder / "model.safetensors", ec)) {
    throw UsageError(fmt::format(
        "{}: holds a run already (model.safetensors); continue it with --resume {}, or choose another --out "
        "(or remove that folder first)",
        folder.string(), folder.string()));
  }
}

fs::path create_run_folder(const fs::path& runs_root) {
  ensure_folder(runs_root);
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &utc);
  fs::path run;
  for (int attempt = 1;; ++attempt) {
    run = runs_root / (attempt == 1 ? std::string(stamp) : fmt::format("{}-{}", stamp, attempt));
    if (::mkdir(run.c_str(), 0755) == 0) break;  // mkdir is atomic: two runs never share a folder
    if (errno != EEXIST || attempt > 1000) {
      throw Error::in_file(run, std::string("cannot create run folder: ") + std::strerror(errno));
    }
  }
  // Replace runs/latest atomically: a new symlink under a temp name, renamed over the old one.
  const fs::path latest = runs_root / "latest";
  const fs::path temp_link = runs_root / fmt::format(".latest.tmp.{}", ::getpid());
  std::error_code ec;
  fs::remove(temp_link, ec);
  fs::create_directory_symlink(run.filename(), temp_link, ec);
  if (!ec) fs::rename(temp_link, latest, ec);
  if (ec) {
    fs::remove(temp_link, ec);
    // Not fatal: the run itself is fine, only the convenience link could not be updated.
  }
  return run;
}

namespace {
constexpr std::string_view kMetricsHeader = "epoch,train_loss,train_acc,test_acc,test_loss,seconds";
constexpr std::string_view kValidationColumns = ",val_loss,val_acc";
}  // namespace

std::string metrics_csv(const std::vector<EpochMetrics>& epochs) {
  const bool validation = !epochs.empty() && epochs.front().has_validation;
  std::string csv = std::string(kMetricsHeader) + (validation ? std::string(kValidationColumns) : "") + "\n";
  for (const EpochMetrics& m : epochs) {
    csv += fmt::format("{},{},{},{},{},{:.4f}", m.epoch, m.train_loss, m.train_acc, m.test_acc, m.test_loss,
                       m.seconds);
    csv += validation ? fmt::format(",{},{}\n", m.val_loss, m.val_acc) : "\n";
  }
  return csv;
}

std::vector<EpochMetrics> read_metrics_csv(const fs::path& path) {
  const std::vector<std::uint8_t> bytes = read_file_bytes(path);
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  std::string line;
  std::vector<EpochMetrics> epochs;
  const bool header_ok = std::getline(in, line) && line.starts_with(kMetricsHeader);
  const std::string_view rest = header_ok ? std::string_view(line).substr(kMetricsHeader.size()) : "";
  if (!header_ok || (!rest.empty() && rest != kValidationColumns)) {
    throw Error::in_file(path, "line 1 is not the metrics.csv header");
  }
  const bool validation = !rest.empty();
  for (int line_number = 2; std::getline(in, line); ++line_number) {
    EpochMetrics m;
    char comma[7] = {',', ',', ',', ',', ',', ',', ','};
    std::istringstream fields(line);
    fields >> m.epoch >> comma[0] >> m.train_loss >> comma[1] >> m.train_acc >> comma[2] >> m.test_acc >>
        comma[3] >> m.test_loss >> comma[4] >> m.seconds;
    if (validation) {
      fields >> comma[5] >> m.val_loss >> comma[6] >> m.val_acc;
      m.has_validation = true;
    }
    if (!fields || std::string(comma, 7) != ",,,,,,," || !(fields >> std::ws).eof()) {
      throw Error::in_file(path, "line " + std::to_string(line_number) + " is not a metrics row");
    }
    epochs.push_back(m);
  }
  return epochs;
}

const EpochMetrics& RunSummary::kept_epoch() const {
  return stopped_early ? epochs.at(static_cast<std::size_t>(best_epoch - 1)) : epochs.back();
}

namespace {

// The recipe as summary.json and the dashboard show it: the seed's fields, then the optimizer's own.
nlohmann::ordered_json recipe_object(const TrainConfig& config) {
  nlohmann::ordered_json recipe = {{"lr", config.lr},
                                   {"batch_size", config.batch_size},
                                   {"epochs", config.epochs},
                                   {"init_std", config.init_std},
                                   {"optimizer", config.optimizer},
                                   {"l2", config.l2},
                                   {"schedule", config.schedule.kind},
                                   {"warmup_epochs", config.schedule.warmup_epochs},
                                   {"standardize", config.standardize}};
  if (config.compute != "f32") recipe["compute"] = config.compute;
  if (config.optimizer == "momentum" || config.optimizer == "nesterov") {
    recipe["momentum"] = config.momentum;
  } else if (config.optimizer.starts_with("adam")) {
    recipe["beta1"] = config.beta1;
    recipe["beta2"] = config.beta2;
    recipe["eps"] = config.eps;
    if (config.optimizer == "adamw") recipe["weight_decay"] = config.weight_decay;
  }
  if (config.schedule.kind == "step") {
    recipe["lr_step_epochs"] = config.schedule.step_epochs;
    recipe["lr_gamma"] = config.schedule.gamma;
  }
  if (config.optimizer == "lbfgs") {
    recipe["max_iter"] = config.max_iter;
    recipe["tol"] = config.tol;
    recipe["history_size"] = config.history_size;
  }
  return recipe;
}

}  // namespace

std::string recipe_json(const TrainConfig& config) {
  return recipe_object(config).dump();
}

std::string summary_json(const RunSummary& s) {
  nlohmann::ordered_json j;
  j["tool"] = "softreg";
  j["recipe"] = recipe_object(s.config);
  j["seed"] = s.config.seed;
  j["threads"] = s.config.threads;
  j["data"] = s.data_folder;
  j["run_folder"] = s.run_folder;
  j["train_examples"] = s.train_examples;
  j["test_examples"] = s.test_examples;
  if (s.validation_examples > 0) j["validation_examples"] = s.validation_examples;
  if (!s.epochs.empty()) {
    const EpochMetrics& last = s.kept_epoch();
    j["epochs_done"] = last.epoch;
    j["train_loss"] = last.train_loss;
    j["train_acc"] = last.train_acc;
    j["test_acc"] = last.test_acc;
    j["test_loss"] = last.test_loss;
  }
  if (s.lbfgs) {
    j["lbfgs"] = {{"iterations", s.lbfgs->iterations},   {"evaluations", s.lbfgs->evaluations},
                  {"objective", s.lbfgs->objective},     {"grad_inf_norm", s.lbfgs->grad_inf_norm},
                  {"stop_reason", s.lbfgs->stop_reason}, {"history", s.lbfgs->history}};
  }
  if (s.best_epoch > 0) {
    j["val_fraction"] = s.config.val_fraction;
    j["best_epoch"] = s.best_epoch;
    j["best_val_acc"] = s.epochs[static_cast<std::size_t>(s.best_epoch - 1)].val_acc;
    j["stopped_early"] = s.stopped_early;
  }
  j["seconds_load"] = s.seconds_load;
  j["seconds_train"] = s.seconds_train;
  j["seconds_checkpoints"] = s.seconds_checkpoints;
  j["checkpoints"] = s.checkpoints;
  j["seconds_total"] = s.seconds_total;
  if (!s.note.empty()) j["note"] = s.note;
  if (!s.checks.empty()) {
    bool all_passed = true;
    auto checks = nlohmann::ordered_json::array();
    for (const AcceptanceCheck& c : s.checks) {
      checks.push_back({{"check", c.name}, {"value", c.value}, {"passed", c.passed}});
      all_passed = all_passed && c.passed;
    }
    j["checks"] = checks;
    j["checks_passed"] = all_passed;
  }
  auto per_epoch = nlohmann::ordered_json::array();
  for (const EpochMetrics& m : s.epochs) {
    per_epoch.push_back({{"epoch", m.epoch},
                         {"train_loss", m.train_loss},
                         {"train_acc", m.train_acc},
                         {"test_acc", m.test_acc},
                         {"test_loss", m.test_loss},
                         {"seconds", m.seconds},
                         {"train_seconds", m.train_seconds},
                         {"eval_seconds", m.eval_seconds},
                         {"barrier_wait_seconds", m.barrier_wait_seconds},
                         {"forward_seconds", m.forward_seconds},
                         {"backward_seconds", m.backward_seconds},
                         {"thread_busy_seconds", m.thread_busy_seconds},
                         {"split_by_classes", m.split_by_classes},
                         {"threads_used", m.threads_used},
                         {"alone_after_stall", m.alone_after_stall},
                         {"core_round_trip_seconds", m.core_round_trip_seconds},
                         {"two_classes_as_one", m.two_classes_as_one},
                         {"ask_ahead", m.ask_ahead}});
    if (m.has_validation) {
      per_epoch.back()["val_loss"] = m.val_loss;
      per_epoch.back()["val_acc"] = m.val_acc;
    }
  }
  j["per_epoch"] = per_epoch;
  return j.dump(2) + "\n";
}

}  // namespace softreg
