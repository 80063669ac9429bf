// Model + data loading shared by eval and predict.
#include "model_data.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>

#include "softreg/error.hpp"

namespace softreg::cli {

Dataset load_split_for_model(const ModelFile& model, const std::optional<std::filesystem::path>& data_folder,
                             const std::string& split, std::string* folder_used) {
  const DataFiles files = locate_data(data_folder);
  if (folder_used) *folder_used = files.folder.string();
  const bool train = split == "train";
  Dataset data = load_dataset(train ? files.train_images : files.test_images,
                              train ? files.train_labels : files.test_labels, model.model.classes());
  if (static_cast<int>(data.height) != model.height || static_cast<int>(data.width) != model.width) {
    throw Error::in_file(train ? files.train_images : files.test_images,
                         fmt::format("images are {}x{}, but the model expects {}x{}", data.height, data.width,
                                     model.height, model.width));
  }
  return data;
}

std::vector<double> probabilities(const float* logits, int classes) {
  const double row_max = *std::max_element(logits, logits + classes);
  std::vector<double> p(static_cast<std::size_t>(classes));
  double sum = 0;
  for (int k = 0; k < classes; ++k)
    sum += p[static_cast<std::size_t>(k)] = std::exp(logits[k] - row_max);
  for (double& v : p)
    v /= sum;
  return p;
}

}  // namespace softreg::cli
