// Model files in the safetensors format (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header, then raw little-endian tensors. softreg writes `weight`
// as float32 [K, D] (the layout of torch.nn.Linear) and `bias` as float32 [K], and keeps what a reader
// needs to use the model (class names, image size, pixel scaling), the recipe and the final metrics in
// `__metadata__`, whose values are strings as the format requires.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/model.hpp"
#include "softreg/train.hpp"

namespace softreg {

/// Version of softreg's metadata layout; a loader accepts this version and older ones.
inline constexpr int kModelFormatVersion = 1;

struct ModelFile {
  SoftmaxModel model;
  std::vector<std::string> class_names;  // K names
  // The training table's feature columns by name (a CSV header), D of them, and its label column's
  // name; empty when unnamed.
  std::vector<std::string> feature_names;
  std::string label_name;
  int height = 0;  // input image size; height * width = D (features: 1 x D)
  int width = 0;
  InputKind input = InputKind::kImages;    // what a row is: grey pixels, or a feature vector
  ElementType element = ElementType::kU8;  // what training read: bytes (seen as x/255) or float32 (as is)
  /// Everything in __metadata__, including the keys above as written (recipe, metrics, training state).
  std::map<std::string, std::string> metadata;
  /// Further float32 tensors by name, stored flat (a checkpoint's optimizer buffers, "optimizer.*").
  std::map<std::string, std::vector<float>> extra_tensors;
};

/// Extra tensors of a model trained with --standardize: the scaling (which `weight` and `bias` already
/// include) and the weights on standardized inputs that training continues from.
inline constexpr const char* kStandardizeMean = "standardize.mean";
inline constexpr const char* kStandardizeStd = "standardize.std";
inline constexpr const char* kStandardizedWeight = "standardized.weight";
inline constexpr const char* kStandardizedBias = "standardized.bias";

/// The bytes of a safetensors file holding `file` (metadata keys for the names, size and format are
/// filled in from the struct).
std::string serialize_model(const ModelFile& file);

/// Parses and validates a safetensors buffer: header length against the size, JSON, dtype, shapes,
/// offsets in range and not overlapping, finite values, and softreg's metadata when present.
/// `source` names the file in error messages.
ModelFile parse_model(std::string_view bytes, const std::string& source);

/// Writes atomically (temp file and rename).
void save_model(const std::filesystem::path& path, const ModelFile& file);
ModelFile load_model(const std::filesystem::path& path);

/// Metadata of a model saved during or after training: the recipe, the data folder, the latest
/// epoch's metrics (if any) and the trainer state needed to resume bit for bit.
std::map<std::string, std::string> checkpoint_metadata(const TrainConfig& config, const TrainerState& state,
                                                       const EpochMetrics* last,
                                                       const std::string& data_folder);

/// The recipe stored by checkpoint_metadata; an error naming `source` if it is missing or malformed.
TrainConfig config_from_metadata(const ModelFile& file, const std::string& source);

/// The trainer state stored by checkpoint_metadata, with the file's weights.
TrainerState trainer_state_from(const ModelFile& file, const std::string& source);

}  // namespace softreg
