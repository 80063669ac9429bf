// Which pictures a run folder gets and what goes into them.
#include "pictures.hpp"

#include "softreg/io.hpp"
#include "softreg/metrics.hpp"

namespace softreg::cli {

std::vector<plot::Series> curve_series(const std::vector<EpochMetrics>& epochs) {
  std::vector<plot::Series> series = {{"train loss", {}}, {"train acc", {}}, {"test acc", {}}};
  for (const EpochMetrics& m : epochs) {
    series[0].values.push_back(m.train_loss);
    series[1].values.push_back(m.train_acc);
    series[2].values.push_back(m.test_acc);
  }
  return series;
}

void write_curves(const std::filesystem::path& folder, const std::vector<EpochMetrics>& epochs,
                  int total_epochs) {
  plot::draw_training_curves(curve_series(epochs), total_epochs, folder / "curves.png",
                             folder / "curves.svg");
}

std::vector<std::string> write_model_pictures(const std::filesystem::path& folder, const SoftmaxModel& model,
                                              const Dataset& test,
                                              const std::vector<std::uint8_t>& predictions,
                                              const std::vector<std::string>& class_names,
                                              const GridChoice& grid) {
  std::vector<plot::GridItem> items;
  for (std::size_t i = 0; i < test.count && static_cast<int>(items.size()) < grid.count; ++i) {
    if (!grid.misclassified || predictions[i] != test.labels[i]) items.push_back({i, predictions[i]});
  }
  plot::draw_prediction_grid(test, items, class_names, folder / "predictions.png");

  const ClassificationReport report = classification_report(test.labels, predictions, model.classes());
  plot::draw_confusion_matrix(report.confusion, class_names, folder / "confusion.png");
  write_file_atomic(folder / "confusion.csv", plot::confusion_csv(report.confusion, class_names));
  plot::draw_weight_templates(model, static_cast<int>(test.height), static_cast<int>(test.width), class_names,
                              folder / "weights.png");
  return {"predictions.png", "confusion.png", "confusion.csv", "weights.png"};
}

}  // namespace softreg::cli
