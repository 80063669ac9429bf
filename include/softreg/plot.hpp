// Pictures of a run: the seed's training curves (its Animator), the prediction grid (its predict_ch3),
// the confusion matrix and the weight templates, drawn with cairo to PNG (and SVG for the curves).
// The numeric code knows nothing of this module; it takes plain numbers and bytes.
//
// The layout arithmetic (axis ranges, ticks, grid cells, legend placement) is separate from the drawing
// so that it can be tested without decoding pictures.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/model.hpp"
#include "softreg/train.hpp"

namespace softreg::plot {

// ---- Geometry ------------------------------------------------------------------------------------

struct Rect {
  double x = 0, y = 0, width = 0, height = 0;
  bool contains(double px, double py) const {
    return px >= x && px <= x + width && py >= y && py <= y + height;
  }
};

/// Tick values covering [lo, hi] with about `target` ticks at a step of 1, 2 or 5 times a power of ten;
/// `lo` and `hi` are widened to whole steps.
struct Ticks {
  double lo = 0;
  double hi = 1;
  double step = 1;
  std::vector<double> values;
};
Ticks nice_ticks(double lo, double hi, int target);

/// The seed's y range, 0.3..0.9, widened to whole tenths so that every finite value fits.
std::pair<double, double> curves_y_range(const std::vector<std::vector<double>>& series);

/// Maps data coordinates to pixels inside `frame` (y grows upwards in data, downwards in pixels).
struct PlotArea {
  Rect frame;
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  double px(double x) const { return frame.x + (x - x_lo) / (x_hi - x_lo) * frame.width; }
  double py(double y) const { return frame.y + frame.height - (y - y_lo) / (y_hi - y_lo) * frame.height; }
};

/// Where to put a legend box of the given size inside the plot area: the candidate spot (corners and
/// middle of the sides) that the fewest curve pixels cross. `series` holds y values at x = 1, 2, ...
Rect place_legend(const PlotArea& area, double width, double height,
                  const std::vector<std::vector<double>>& series);

/// Cells of the prediction grid: columns, rows, the scaled image and the title area of each cell.
struct GridLayout {
  int count = 0;
  int columns = 0;
  int rows = 0;
  int image_scale = 1;     // each source pixel becomes image_scale x image_scale (nearest neighbour)
  double image_width = 0;  // scaled image size in pixels
  double image_height = 0;
  double cell_width = 0;
  double cell_height = 0;
  double title_height = 0;  // two lines above each image: true label, predicted label
  double font_size = 0;
  double margin = 0;
  double footer_height = 0;  // the line explaining the titles
  double width = 0;          // whole picture
  double height = 0;
  Rect image_rect(int i) const;
  Rect title_rect(int i) const;
};
/// A grid for `count` images of image_width x image_height: one row like the seed for a few images,
/// smaller cells and more columns as the count grows, never wider or taller than cairo allows.
GridLayout prediction_grid_layout(int count, int image_width, int image_height);

// ---- Pictures ------------------------------------------------------------------------------------

/// One series of the training curves.
struct Series {
  std::string name;
  std::vector<double> values;  // at epochs 1, 2, ...
};

/// The Animator's picture: x = epoch 1..total_epochs, the series with a legend, axes with ticks and
/// labels. Writes `png` and, if not empty, `svg`, each atomically.
void draw_training_curves(const std::vector<Series>& series, int total_epochs,
                          const std::filesystem::path& png, const std::filesystem::path& svg);

/// One line of the tuning chart: a score at each L2 penalty (NaN where the trial has none).
struct TunePath {
  std::string name;  // "lr 0.1", or "" for a single path
  std::vector<double> lambdas;
  std::vector<double> val_acc;
  std::vector<double> val_loss;
};
/// tune.png/tune.svg: validation accuracy (left) and loss (right) against the L2 penalty on a log axis
/// (a penalty of 0 is drawn at the grid's left end), one line per path, the chosen trial ringed.
void draw_tune_chart(const std::vector<TunePath>& paths, double best_lambda, std::size_t best_path,
                     const std::filesystem::path& png, const std::filesystem::path& svg);

/// One image of the prediction grid.
struct GridItem {
  std::size_t index;  // row in the dataset
  int predicted;
};
/// Test images scaled up crisply, each titled with its true label over the predicted one; wrong
/// predictions are marked in red with a frame.
void draw_prediction_grid(const Dataset& data, const std::vector<GridItem>& items,
                          const std::vector<std::string>& class_names, const std::filesystem::path& png);

/// A K x K heatmap of counts ([true][predicted]) with class names and the count in every cell.
void draw_confusion_matrix(const std::vector<std::vector<std::int64_t>>& confusion,
                           const std::vector<std::string>& class_names, const std::filesystem::path& png);

/// Each class's weights as a height x width image in a diverging colour map (blue negative, white zero,
/// red positive; symmetric per class), titled with the class name.
void draw_weight_templates(const SoftmaxModel& model, int height, int width,
                           const std::vector<std::string>& class_names, const std::filesystem::path& png);

/// The PNG bytes of a grey image (row-major bytes, 0 black), each pixel drawn as a scale x scale block.
std::string gray_image_png(std::span<const std::uint8_t> pixels, int width, int height, int scale = 1);

/// The confusion matrix as CSV: a header of predicted class names, one row per true class.
std::string confusion_csv(const std::vector<std::vector<std::int64_t>>& confusion,
                          const std::vector<std::string>& class_names);

// ---- A run's pictures ----------------------------------------------------------------------------

/// The seed's three curves (train loss, train acc, test acc) from the per-epoch metrics.
std::vector<Series> curve_series(const std::vector<EpochMetrics>& epochs);

/// Throws softreg::Error (naming the library) if pictures cannot be drawn here: the drawing library
/// is loaded on first use, and a run that will draw checks before it trains rather than after.
void check_drawing_available();

/// curves.png and curves.svg in `folder`.
void write_curves(const std::filesystem::path& folder, const std::vector<EpochMetrics>& epochs,
                  int total_epochs);

/// Which test images the prediction grid shows.
struct GridChoice {
  int count = 6;               // how many images (the seed shows 6)
  bool misclassified = false;  // only the mistakes
};

/// The most classes the per-class pictures (confusion.png, weights.png) are drawn for.
inline constexpr int kMaxClassesDrawn = 50;

/// predictions.png, confusion.png, confusion.csv and weights.png in `folder`, from the model's
/// predictions on `test` (the image pictures only for images, the per-class ones only up to
/// kMaxClassesDrawn classes), drawn side by side on the pool's threads. Returns the names of the files
/// written.
std::vector<std::string> write_model_pictures(const std::filesystem::path& folder, const SoftmaxModel& model,
                                              const Dataset& test, const std::vector<Label>& predictions,
                                              const std::vector<std::string>& class_names,
                                              const GridChoice& grid, ThreadPool& pool);

// ---- Terminal ------------------------------------------------------------------------------------

/// A compact chart of the series in Unicode braille (2x4 dots per character), `width` x `height`
/// characters plus a y-axis label column and a legend line; with `color`, each series in its own ANSI
/// colour. x spans epochs 1..total_epochs, y the range of curves_y_range.
std::vector<std::string> braille_chart(const std::vector<Series>& series, int total_epochs, int width,
                                       int height, bool color);

}  // namespace softreg::plot
