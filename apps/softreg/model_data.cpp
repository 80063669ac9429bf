// Model + data loading shared by eval and predict.
#include "model_data.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>

#include "softreg/error.hpp"
#include "softreg/loss.hpp"

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
  // The library's stable softmax, on one row promoted to double.
  RowMatrix<double> row(1, classes);
  for (int k = 0; k < classes; ++k)
    row(0, k) = logits[k];
  const RowMatrix<double> p = softmax_rows(row);
  return std::vector<double>(p.data(), p.data() + classes);
}

}  // namespace softreg::cli
