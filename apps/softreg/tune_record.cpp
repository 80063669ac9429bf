// tune.json's trials and the tune chart (see tune_record.hpp).
#include "tune_record.hpp"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <map>

#include "softreg/error.hpp"
#include "softreg/plot.hpp"

namespace softreg::cli {

nlohmann::ordered_json trial_json(const TuneTrial& t, bool with_lr) {
  nlohmann::ordered_json j;
  j["l2"] = t.l2;
  if (with_lr) j["lr"] = t.lr;
  // A diverged trial has no score: null rather than NaN, which JSON cannot hold.
  j["val_acc"] = t.scored() ? nlohmann::ordered_json(t.val_acc) : nlohmann::ordered_json();
  j["val_loss"] = t.scored() ? nlohmann::ordered_json(t.val_loss) : nlohmann::ordered_json();
  j["train_loss"] = t.scored() ? nlohmann::ordered_json(t.train_loss) : nlohmann::ordered_json();
  j["steps"] = t.steps;
  j["seconds"] = t.seconds;
  j["status"] = t.status;
  return j;
}

TuneRecord read_tune_record(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error::in_file(path, "cannot open for reading");
  TuneRecord record;
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    const nlohmann::json& best = j.at("best");
    for (const nlohmann::json& t : j.at("trials")) {
      // Every number in the range tune writes: the chart takes logarithms, a count is an int.
      const auto number = [&](const char* name, double low, double high) {
        const double v = t.at(name).get<double>();
        if (!(v >= low && v <= high)) {
          throw Error(fmt::format("trial {}: {} {} is not in [{}, {}]", record.result.trials.size() + 1, name,
                                  v, low, high));
        }
        return v;
      };
      const auto score = [&](const char* name, double high) {
        return t.at(name).is_null() ? NAN : number(name, 0, high);
      };
      TuneTrial trial;
      trial.l2 = number("l2", 0, 1e300);
      record.with_lr = t.contains("lr");
      if (record.with_lr) trial.lr = number("lr", 1e-300, 1e300);
      trial.status = t.at("status").get<std::string>();
      trial.val_acc = score("val_acc", 1);
      trial.val_loss = score("val_loss", 1e300);
      trial.train_loss = score("train_loss", 1e300);
      trial.steps = static_cast<int>(number("steps", 0, 1e9));
      trial.seconds = number("seconds", 0, 1e300);
      record.result.trials.push_back(trial);
    }
    const double best_l2 = best.at("l2").get<double>();
    const double best_lr = record.with_lr ? best.at("lr").get<double>() : 0.0;
    bool found = false;
    for (std::size_t i = 0; i < record.result.trials.size() && !found; ++i) {
      const TuneTrial& t = record.result.trials[i];
      if (t.l2 == best_l2 && t.lr == best_lr && t.scored()) {
        record.result.best = i;
        found = true;
      }
    }
    if (!found) throw Error("its best setting is none of its trials");
  } catch (const nlohmann::json::exception& e) {
    throw Error::in_file(path, fmt::format("not a tune.json of softreg tune ({})", e.what()));
  } catch (const Error& e) {
    throw Error::in_file(path, e.what());
  }
  return record;
}

void draw_tune(const std::filesystem::path& folder, const TuneResult& r, bool with_lr) {
  std::vector<plot::TunePath> paths;
  std::map<double, std::size_t> path_of_lr;
  for (const TuneTrial& t : r.trials) {
    auto [it, added] = path_of_lr.emplace(with_lr ? t.lr : 0.0, paths.size());
    if (added) paths.push_back({with_lr ? fmt::format("lr {:g}", t.lr) : "", {}, {}, {}});
    plot::TunePath& p = paths[it->second];
    p.lambdas.push_back(t.l2);
    p.val_acc.push_back(t.scored() ? t.val_acc : NAN);
    p.val_loss.push_back(t.scored() ? t.val_loss : NAN);
  }
  const TuneTrial& best = r.trials[r.best];
  plot::draw_tune_chart(paths, best.l2, path_of_lr.at(with_lr ? best.lr : 0.0), folder / "tune.png",
                        folder / "tune.svg");
}

}  // namespace softreg::cli
