// tune.json's trials and tune.png/tune.svg: written by `softreg tune`, read back by `softreg plot` to draw
// the chart again.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "softreg/tune.hpp"

namespace softreg::cli {

/// One trial as tune.json holds it (a diverged trial's scores are null).
nlohmann::ordered_json trial_json(const TuneTrial& trial, bool with_lr);

/// The trials of a tune.json, the winner among them, and whether they swept learning rates.
struct TuneRecord {
  TuneResult result;
  bool with_lr = false;
};
/// Reads `path` (a tune.json written by trial_json's caller); an Error names the file and what is wrong.
TuneRecord read_tune_record(const std::filesystem::path& path);

/// folder/tune.png and folder/tune.svg: one path per learning rate, the winner ringed.
void draw_tune(const std::filesystem::path& folder, const TuneResult& result, bool with_lr);

}  // namespace softreg::cli
