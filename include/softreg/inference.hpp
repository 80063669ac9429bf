// Using a saved model: the data split it applies to, its evaluation (loss, accuracy, per-class figures,
// confusion matrix) and its predictions for test images or image files. The CLI's eval and predict,
// Python and the server only format what these return.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/image.hpp"
#include "softreg/metrics.hpp"
#include "softreg/model_io.hpp"
#include "softreg/parallel.hpp"
#include "softreg/sources.hpp"

namespace softreg {

/// One split of the data, found as locate_data(data_folder) finds it.
struct SplitData {
  Dataset data;
  std::filesystem::path folder;  // where it was found: a folder, or the split's own file
};

/// Loads `split` ("train", "test" or "val") of `source` (default: the source recorded in the model, else the
/// default Fashion-MNIST search) with the model's classes, and checks that its rows have the model's
/// shape and value type; an error names the data otherwise. Classes named by text labels or folder
/// names are mapped to the model's by name. A source of test rows alone (names_test_part_only), or a
/// folder of class folders without train/ (resized to the model's size), is all rows to evaluate on;
/// a CSV source without a label column takes the model's (recorded_label_column). "val" is the validation
/// set given with the data, or else the rows the model's --val-fraction held out (its recorded fraction
/// and seed, as the trainer drew them).
SplitData load_split_for_model(const ModelFile& model, const std::optional<DataSource>& source,
                               const std::string& split);

/// The CSV label column (name or index) the model was trained with, from its data_source record; empty
/// when it was not trained on CSV or none was given (the first column).
std::string recorded_label_column(const ModelFile& model);

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

/// How the rows given to exact_logits hold their values.
enum class RowValues : std::uint8_t {
  kU8,   // bytes: the model sees byte / 255, as in training
  kF32,  // float32, as they are
  kF64,  // float64, as they are
};

/// The logits of `count` rows (row-major, model.inputs() values each, as `type` says) into `out`,
/// (count, K) row-major, in double precision. Each row is computed alone, in the same order whatever
/// the rows around it, so predicting a subset gives the same values (scikit-learn checks this); rows
/// are shared out over `pool` in fixed blocks.
void exact_logits(const SoftmaxModel& model, const void* rows, RowValues type, std::size_t count, double* out,
                  ThreadPool& pool);

/// Softmax probabilities of one row of logits, computed stably in double precision.
std::vector<double> probabilities_from_logits(const float* logits, int classes);

/// Predictions for the test images first..last (inclusive); an error if last is past the end.
std::vector<Prediction> predict_rows(const SoftmaxModel& model, const Dataset& data, std::size_t first,
                                     std::size_t last);

/// Predictions for every row of a feature file, for a model trained on features: a .npy of D columns
/// (float32/64, or uint8 for a uint8 model) or a CSV of D feature columns, optionally with a label
/// column as in training (then `label_column`, else the model's, recorded_label_column; its labels are
/// not needed).
/// Inputs are named "<file>:<row>".
std::vector<Prediction> predict_feature_file(const ModelFile& model, const std::filesystem::path& path,
                                             const std::string& label_column);

/// The prediction for an image file of any size and colour: converted to grey, resized to the model's
/// input size by area averaging and, with `invert`, inverted (for dark objects on a light background).
/// Transparent pixels count as background: black, or white when inverting (so they end up black).
Prediction predict_image_file(const ModelFile& model, const std::filesystem::path& path, bool invert);

/// The same for an image file's bytes (named `source` in messages and in the prediction), refusing
/// images with a side longer than `max_side` before decoding them.
Prediction predict_image_bytes(const ModelFile& model, std::span<const std::uint8_t> file,
                               const std::string& source, bool invert, int max_side = kMaxImageSide);

}  // namespace softreg
