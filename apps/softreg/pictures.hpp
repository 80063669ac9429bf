// The pictures a run leaves in its folder, shared by `train` and `plot`.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/model.hpp"
#include "softreg/plot.hpp"
#include "softreg/train.hpp"

namespace softreg::cli {

/// The seed's three curves from the per-epoch metrics.
std::vector<plot::Series> curve_series(const std::vector<EpochMetrics>& epochs);

/// curves.png and curves.svg in `folder`.
void write_curves(const std::filesystem::path& folder, const std::vector<EpochMetrics>& epochs,
                  int total_epochs);

struct GridChoice {
  int count = 6;               // how many images (the seed shows 6)
  bool misclassified = false;  // only the mistakes
};

/// predictions.png, confusion.png, confusion.csv and weights.png in `folder`, from the model's
/// predictions on `test`. Returns the names of the files written.
std::vector<std::string> write_model_pictures(const std::filesystem::path& folder, const SoftmaxModel& model,
                                              const Dataset& test,
                                              const std::vector<std::uint8_t>& predictions,
                                              const std::vector<std::string>& class_names,
                                              const GridChoice& grid);

}  // namespace softreg::cli
