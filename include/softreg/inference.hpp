// Using a saved model: the data split it applies to, its evaluation (loss, accuracy, per-class figures,
// confusion matrix) and its predictions for test images or image files. The CLI's eval and predict,
// Python and the server only format what these return.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/metrics.hpp"
#include "softreg/model_io.hpp"
#include "softreg/parallel.hpp"

namespace softreg {

/// One split of the data, found as locate_data(data_folder) finds it.
struct SplitData {
  Dataset data;
  std::filesystem::path folder;  // where it was found
};

/// Loads `split` ("train" or "test") with the model's number of classes and checks that its images
/// have the model's size; an error names the file otherwise.
SplitData load_split_for_model(const ModelFile& model,
                               const std::optional<std::filesystem::path>& data_folder,
                               const std::string& split);

/// A model's figures on a dataset: mean loss, accuracy with its standard error, per-class precision,
/// recall and F1, and the confusion matrix.
struct ModelEvaluation {
  Evaluation evaluation;
  ClassificationReport report;
};
ModelEvaluation evaluate_model(const SoftmaxModel& model, const Dataset& data, ThreadPool& pool);

/// The class probabilities of one input.
struct Prediction {
  std::string input;                  // "test:<index>" or the file's path
  std::optional<int> label;           // the true class, when known
  std::vector<double> probabilities;  // K, summing to one

  /// The `k` most probable classes, most probable first (ties: the lower class first).
  std::vector<int> top(std::size_t k) const;
};

/// Softmax probabilities of one row of logits, computed stably in double precision.
std::vector<double> probabilities_from_logits(const float* logits, int classes);

/// Predictions for the test images first..last (inclusive); an error if last is past the end.
std::vector<Prediction> predict_rows(const SoftmaxModel& model, const Dataset& data, std::size_t first,
                                     std::size_t last);

/// The prediction for an image file of any size and colour: converted to grey, resized to the model's
/// input size by area averaging and, with `invert`, inverted (for dark objects on a light background).
Prediction predict_image_file(const ModelFile& model, const std::filesystem::path& path, bool invert);

}  // namespace softreg
