// A labelled image set held as bytes (pixels 0..255), plus finding Fashion-MNIST on disk.
// The model sees pixels scaled to [0,1] (the seed's ToTensor); the scaling happens where rows are used.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "softreg/bytes.hpp"
#include "softreg/model.hpp"

namespace softreg {

/// Fashion-MNIST's ten classes, in label order.
inline constexpr int kFashionMnistClasses = 10;
inline constexpr std::array<std::string_view, kFashionMnistClasses> kFashionMnistClassNames = {
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"};

/// "0", "1", ...: the names of classes that have only numbers.
std::vector<std::string> numbered_class_names(int classes);

/// Names for `classes` classes: Fashion-MNIST's for 10, the class numbers otherwise.
std::vector<std::string> default_class_names(int classes);

/// What a row of a dataset holds.
enum class InputKind : std::uint8_t {
  kImages,    // height x width grey pixels
  kFeatures,  // a vector of numbers (embeddings, table columns): no picture to draw
};
/// How a row's values are stored. The model sees value * Dataset::scale(). Float64 rows (NumPy arrays
/// from Python, read where they lie) are seen rounded to float32, exactly as if converted first: the
/// kernels compute in float32 either way.
enum class ElementType : std::uint8_t { kU8, kF32, kF64 };
std::size_t element_size(ElementType type);
std::string_view element_name(ElementType type);  // "u8", "f32" or "f64"

/// ToTensor's scaling of a pixel byte (and of any uint8 features): the model sees byte / 255.
inline constexpr float kPixelScale = 1.0f / 255.0f;

/// Labelled rows, row-major: one row of features() values per example, each `element` typed. Images
/// have height*width values; feature rows have height 1 and width D. Loaded rows are a view of the
/// memory-mapped file (or a decoded buffer): no per-run copy.
struct Dataset {
  std::size_t count = 0;
  std::size_t height = 0;
  std::size_t width = 0;
  int num_classes = 0;
  InputKind kind = InputKind::kImages;
  ElementType element = ElementType::kU8;
  Bytes pixels;                          // count * row_bytes() bytes (named for images; holds any rows)
  std::vector<Label> labels;             // count labels, each < num_classes
  std::vector<std::string> class_names;  // num_classes names, or empty for the defaults
  // A table's feature columns by name, in row order, and its label column's name (a CSV header);
  // empty when unnamed.
  std::vector<std::string> feature_names;
  std::string label_name;

  std::size_t features() const { return height * width; }
  std::size_t row_bytes() const { return features() * element_size(element); }
  /// What each stored value is multiplied by before the model sees it: 1/255 for bytes, 1 for floats.
  float scale() const { return element == ElementType::kU8 ? kPixelScale : 1.0f; }
  /// The bytes of row i (uint8 values, or float32 values when element is kF32).
  const std::uint8_t* image(std::size_t i) const { return pixels.data() + i * row_bytes(); }
  /// Row i's value d as the model sees it (times scale).
  float value(std::size_t i, std::size_t d) const;
};

/// A seeded, stratified hold-out: about `fraction` of each class's examples (rounded per class), chosen
/// from `seed` alone, as sorted row indices. Deterministic for a given dataset, fraction and seed.
std::vector<std::uint32_t> stratified_holdout(const Dataset& data, double fraction, std::uint64_t seed);
/// The same, for a part the run needs rows in and rows beside (`part`: "validation", "test"): an Error
/// where the rounding holds out no row, or every row.
std::vector<std::uint32_t> stratified_holdout_of_some(const Dataset& data, double fraction,
                                                      std::uint64_t seed, std::string_view part);

/// The given rows of `data` as a dataset of their own (a copy; for small parts such as a validation set).
Dataset subset(const Dataset& data, std::span<const std::uint32_t> rows);

/// A learnable synthetic dataset of any shape, for benchmarks and tests: `count` rows of `features`
/// values (bytes, or floats in [0, 1]) with labels cycling through `classes`; each class adds its own
/// pseudo-random pattern to uniform noise, so a linear model can tell the classes apart.
Dataset synthetic_dataset(std::size_t count, std::size_t features, int classes, ElementType element,
                          std::uint64_t seed);

/// How many examples each of the num_classes classes has (labels only: no pass over the values).
std::vector<std::int64_t> examples_per_class(const Dataset& data);

/// What is in a dataset: examples per class and the mean pixel in [0, 1] (as the model sees pixels).
struct DatasetStats {
  std::vector<std::int64_t> per_class;  // num_classes counts
  double mean_pixel = 0;
};
DatasetStats dataset_stats(const Dataset& data);

/// Loads an images file and a labels file (IDX, raw or gzip) and checks that they belong together:
/// equal counts and every label < num_classes.
Dataset load_dataset(const std::filesystem::path& images, const std::filesystem::path& labels,
                     int num_classes);

/// The four files of an MNIST-style folder.
struct DataFiles {
  std::filesystem::path folder;
  std::filesystem::path train_images, train_labels, test_images, test_labels;
};

/// Looks for the four files (each by its plain name or with .gz) in `folder`; nullopt if any is missing.
std::optional<DataFiles> find_data_files(const std::filesystem::path& folder);

/// The folders searched when no --data is given, in order: $SOFTREG_DATA, ./data/fashion-mnist,
/// ~/.cache/softreg/fashion-mnist, /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
std::vector<std::filesystem::path> default_data_folders();

/// Finds the data: in `explicit_folder` if given (an error names the missing files), otherwise in the
/// first complete default folder (an error lists where it looked and how to get the data).
DataFiles locate_data(const std::optional<std::filesystem::path>& explicit_folder);

/// Train and test sets loaded together; their image sizes must agree.
struct TrainTestData {
  Dataset train;
  Dataset test;
  /// A validation set given beside them (an image folder's val/, an .npz's x_val, --val-csv, ...), which
  /// takes the place of --val-fraction's held-out rows.
  std::optional<Dataset> validation = std::nullopt;
};
TrainTestData load_train_test(const DataFiles& files, int num_classes = kFashionMnistClasses);

}  // namespace softreg
