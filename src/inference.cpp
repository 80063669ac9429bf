// Evaluation and prediction with a saved model, on top of the forward kernels.
#include "softreg/inference.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "softreg/error.hpp"
#include "softreg/image.hpp"
#include "softreg/kernels.hpp"
#include "softreg/loss.hpp"

namespace softreg {

SplitData load_split_for_model(const ModelFile& model,
                               const std::optional<std::filesystem::path>& data_folder,
                               const std::string& split) {
  if (split != "train" && split != "test") throw Error("split must be train or test, got '" + split + "'");
  const DataFiles files = locate_data(data_folder);
  const bool train = split == "train";
  const std::filesystem::path& images = train ? files.train_images : files.test_images;
  SplitData result{
      load_dataset(images, train ? files.train_labels : files.test_labels, model.model.classes()),
      files.folder};
  if (static_cast<int>(result.data.height) != model.height ||
      static_cast<int>(result.data.width) != model.width) {
    throw Error::in_file(images,
                         fmt::format("images are {}x{}, but the model expects {}x{}", result.data.height,
                                     result.data.width, model.height, model.width));
  }
  return result;
}

ModelEvaluation evaluate_model(const SoftmaxModel& model, const Dataset& data, ThreadPool& pool) {
  ModelEvaluation result;
  result.evaluation = evaluate(model, data, pool);
  result.report = classification_report(data.labels, result.evaluation.predictions, model.classes());
  return result;
}

std::vector<int> Prediction::top(std::size_t k) const {
  std::vector<int> order(probabilities.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return probabilities[static_cast<std::size_t>(a)] > probabilities[static_cast<std::size_t>(b)];
  });
  order.resize(std::min(k, order.size()));
  return order;
}

std::vector<double> probabilities_from_logits(const float* logits, int classes) {
  // The library's stable softmax, on one row promoted to double.
  RowMatrix<double> row(1, classes);
  for (int k = 0; k < classes; ++k)
    row(0, k) = logits[k];
  const RowMatrix<double> p = softmax_rows(row);
  return std::vector<double>(p.data(), p.data() + classes);
}

std::vector<Prediction> predict_rows(const SoftmaxModel& model, const Dataset& data, std::size_t first,
                                     std::size_t last) {
  if (last < first || last >= data.count) {
    throw Error(fmt::format("rows {}..{} are not inside the {} examples", first, last, data.count));
  }
  const RowMatrix<float> logits = logits_of_rows(data, first, last + 1, model);
  std::vector<Prediction> predictions;
  for (std::size_t i = first; i <= last; ++i) {
    predictions.push_back({fmt::format("test:{}", i), data.labels[i],
                           probabilities_from_logits(logits.row(static_cast<Eigen::Index>(i - first)).data(),
                                                     model.classes())});
  }
  return predictions;
}

Prediction predict_image_file(const ModelFile& model, const std::filesystem::path& path, bool invert_image) {
  GrayImage image = resize_area(read_gray_image(path), model.width, model.height);
  if (invert_image) invert(image);
  Dataset one;
  one.count = 1;
  one.height = static_cast<std::size_t>(model.height);
  one.width = static_cast<std::size_t>(model.width);
  one.num_classes = model.model.classes();
  one.pixels = std::move(image.pixels);
  one.labels = {0};
  const RowMatrix<float> logits = logits_of_rows(one, 0, 1, model.model);
  return {path.string(), std::nullopt, probabilities_from_logits(logits.data(), model.model.classes())};
}

}  // namespace softreg
