// Which pictures a run folder gets and what goes into them, shared by training runs and `plot`.
#include <functional>

#include "softreg/atomic_file.hpp"
#include "softreg/metrics.hpp"
#include "softreg/parallel.hpp"
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
                                              const GridChoice& grid, ThreadPool& pool) {
  // Feature rows are not pictures, and beyond kMaxClassesDrawn classes a picture per class (or a K x K
  // grid of cells) is no longer readable: confusion.csv has the figures then.
  const bool images = test.kind == InputKind::kImages;
  const bool drawable = model.classes() <= kMaxClassesDrawn;
  // Each picture is its own surface and file, so they are drawn side by side on the pool's threads
  // (PNG encoding is most of each). The pool gives job i to thread i % threads: in this order two
  // threads take the weights and the grid, and the confusion matrix, about even (`softreg plot` took
  // 40 ms instead of 54 so). The curves stay out of this: cairo numbers an SVG's surface by the surfaces
  // created before it in the process, so curves.svg drawn beside others would not be the same bytes
  // each time.
  const ClassificationReport report = classification_report(test.labels, predictions, model.classes());
  std::vector<std::function<void()>> jobs;
  if (images && drawable) {
    jobs.emplace_back([&] {
      draw_weight_templates(model, static_cast<int>(test.height), static_cast<int>(test.width), class_names,
                            folder / "weights.png");
    });
  }
  jobs.emplace_back([&] {
    if (drawable) draw_confusion_matrix(report.confusion, class_names, folder / "confusion.png");
    write_file_atomic(folder / "confusion.csv", confusion_csv(report.confusion, class_names));
  });
  if (images) {
    jobs.emplace_back([&] {
      std::vector<GridItem> items;
      for (std::size_t i = 0; i < test.count && static_cast<int>(items.size()) < grid.count; ++i) {
        if (!grid.misclassified || predictions[i] != test.labels[i]) items.push_back({i, predictions[i]});
      }
      draw_prediction_grid(test, items, class_names, folder / "predictions.png");
    });
  }
  pool.run(jobs.size(), [&](std::size_t i) { jobs[i](); });

  std::vector<std::string> written;
  if (images) written.push_back("predictions.png");
  if (drawable) written.push_back("confusion.png");
  written.push_back("confusion.csv");
  if (images && drawable) written.push_back("weights.png");
  return written;
}

}  // namespace softreg::plot
