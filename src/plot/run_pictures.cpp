// Which pictures a run folder gets and what goes into them, shared by training runs and `plot`.
#include "softreg/atomic_file.hpp"
#include "softreg/metrics.hpp"
#include "softreg/plot.hpp"

namespace softreg::plot {

std::vector<Series> curve_series(const std::vector<EpochMetrics>& epochs) {
  std::vector<Series> series = {{"train loss", {}}, {"train acc", {}}, {"test acc", {}}};
  for (const EpochMetrics& m : epochs) {
    series[0].values.push_back(m.train_loss);
    series[1].values.push_back(m.train_acc);
    series[2].values.push_back(m.test_acc);
  }
  return series;
}

void write_curves(const std::filesystem::path& folder, const std::vector<EpochMetrics>& epochs,
                  int total_epochs) {
  draw_training_curves(curve_series(epochs), total_epochs, folder / "curves.png", folder / "curves.svg");
}

std::vector<std::string> write_model_pictures(const std::filesystem::path& folder, const SoftmaxModel& model,
                                              const Dataset& test, const std::vector<Label>& predictions,
                                              const std::vector<std::string>& class_names,
                                              const GridChoice& grid) {
  // Feature rows are not pictures, and beyond kMaxClassesDrawn classes a picture per class (or a K x K
  // grid of cells) is no longer readable: confusion.csv has the figures then.
  const bool images = test.kind == InputKind::kImages;
  const bool drawable = model.classes() <= kMaxClassesDrawn;
  std::vector<std::string> written;
  if (images) {
    std::vector<GridItem> items;
    for (std::size_t i = 0; i < test.count && static_cast<int>(items.size()) < grid.count; ++i) {
      if (!grid.misclassified || predictions[i] != test.labels[i]) items.push_back({i, predictions[i]});
    }
    draw_prediction_grid(test, items, class_names, folder / "predictions.png");
    written.push_back("predictions.png");
  }
  const ClassificationReport report = classification_report(test.labels, predictions, model.classes());
  if (drawable) {
    draw_confusion_matrix(report.confusion, class_names, folder / "confusion.png");
    written.push_back("confusion.png");
  }
  write_file_atomic(folder / "confusion.csv", confusion_csv(report.confusion, class_names));
  written.push_back("confusion.csv");
  if (images && drawable) {
    draw_weight_templates(model, static_cast<int>(test.height), static_cast<int>(test.width), class_names,
                          folder / "weights.png");
    written.push_back("weights.png");
  }
  return written;
}

}  // namespace softreg::plot
