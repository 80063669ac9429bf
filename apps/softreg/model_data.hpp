// Loading a saved model together with the data split it is used on, checking that they fit.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "softreg/dataset.hpp"
#include "softreg/model_io.hpp"

namespace softreg::cli {

/// Loads `split` ("train" or "test") of the data found from `data_folder`, with the model's number of
/// classes, and checks that its images have the model's size.
Dataset load_split_for_model(const ModelFile& model, const std::optional<std::filesystem::path>& data_folder,
                             const std::string& split, std::string* folder_used = nullptr);

/// Softmax probabilities of one row of logits, in double precision.
std::vector<double> probabilities(const float* logits, int classes);

}  // namespace softreg::cli
