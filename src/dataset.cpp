// Loading and locating datasets; all file checks live in idx.cpp, the cross-file checks here.
#include "softreg/dataset.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <future>

#include "softreg/error.hpp"
#include "softreg/idx.hpp"
#include "softreg/rng.hpp"

namespace softreg {
namespace fs = std::filesystem;

namespace {

constexpr std::array<const char*, 4> kFileNames = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

std::optional<fs::path> find_one(const fs::path& folder, const std::string& name) {
  std::error_code ec;
  for (const fs::path& candidate : {folder / name, folder / (name + ".gz")}) {
    if (fs::is_regular_file(candidate, ec)) return candidate;
  }
  return std::nullopt;
}

}  // namespace

std::size_t element_size(ElementType type) {
  switch (type) {
    case ElementType::kU8:
      return 1;
    case ElementType::kF32:
      return sizeof(float);
    case ElementType::kF64:
      return sizeof(double);
  }
  return 1;
}

std::string_view element_name(ElementType type) {
  switch (type) {
    case ElementType::kU8:
      return "u8";
    case ElementType::kF32:
      return "f32";
    case ElementType::kF64:
      return "f64";
  }
  return "u8";
}

float Dataset::value(std::size_t i, std::size_t d) const {
  if (element == ElementType::kF32) {
    float v;
    std::memcpy(&v, image(i) + d * sizeof(float), sizeof(float));
    return v;
  }
  if (element == ElementType::kF64) {
    double v;
    std::memcpy(&v, image(i) + d * sizeof(double), sizeof(double));
    return static_cast<float>(v);
  }
  return static_cast<float>(image(i)[d]) / 255.0f;  // a float division, exactly as ToTensor does
}

std::vector<std::string> numbered_class_names(int classes) {
  std::vector<std::string> names;
  for (int k = 0; k < classes; ++k)
    names.push_back(std::to_string(k));
  return names;
}

std::vector<std::string> default_class_names(int classes) {
  std::vector<std::string> names;
  for (int k = 0; k < classes; ++k) {
    names.push_back(classes == kFashionMnistClasses
                        ? std::string(kFashionMnistClassNames[static_cast<std::size_t>(k)])
                        : std::to_string(k));
  }
  return names;
}

Dataset load_dataset(const fs::path& images_path, const fs::path& labels_path, int num_classes) {
  // The two files are independent, so decode them side by side: decompression dominates loading.
  auto labels_future =
      std::async(std::launch::async, [&] { return read_idx_file(labels_path, kIdxLabelsMagic); });
  IdxArray images = read_idx_file(images_path, kIdxImagesMagic);
  IdxArray labels = labels_future.get();

  Dataset set;
  set.count = images.dims[0];
  set.height = images.dims[1];
  set.width = images.dims[2];
  set.num_classes = num_classes;
  if (labels.dims[0] != set.count) {
    throw Error::in_file(labels_path, "has " + std::to_string(labels.dims[0]) + " labels, but " +
                                          images_path.filename().string() + " has " +
                                          std::to_string(set.count) + " images");
  }
  for (std::size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= num_classes) {
      throw Error::in_file(labels_path, "label " + std::to_string(labels.data[i]) + " at index " +
                                            std::to_string(i) + " is out of range (expected < " +
                                            std::to_string(num_classes) + " classes)");
    }
  }
  set.pixels = std::move(images.data);
  set.labels.assign(labels.data.begin(), labels.data.end());  // small: one byte an image
  return set;
}

std::optional<DataFiles> find_data_files(const fs::path& folder) {
  std::array<fs::path, 4> found;
  for (std::size_t i = 0; i < kFileNames.size(); ++i) {
    auto path = find_one(folder, kFileNames[i]);
    if (!path) return std::nullopt;
    found[i] = *path;
  }
  return DataFiles{folder, found[0], found[1], found[2], found[3]};
}

std::vector<fs::path> default_data_folders() {
  std::vector<fs::path> folders;
  if (const char* env = std::getenv("SOFTREG_DATA"); env && *env) folders.emplace_back(env);
  folders.emplace_back("data/fashion-mnist");
  if (const char* home = std::getenv("HOME"); home && *home) {
    folders.push_back(fs::path(home) / ".cache/softreg/fashion-mnist");
  }
  folders.emplace_back("/usr/share/datasets/fashion-mnist");
  return folders;
}

namespace {

// For a file given as --data (which takes a folder or an .npz): the flag that takes a file like it.
std::string what_else_a_file_takes(const fs::path& file) {
  const auto lower = [](std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
  };
  const std::string extension = lower(file.extension().string());
  if (extension == ".gz" && lower(file.stem().extension().string()) == ".csv")
    return " (a table goes to --train-csv, compressed or not)";
  if (extension == ".npy")
    return " (an .npy holds one array: give --train-features and --train-labels, or --data an .npz of "
           "x_train, y_train, x_test, y_test)";
  if (extension == ".csv" || extension == ".tsv" || extension == ".txt")
    return " (a table goes to --train-csv)";
  if (extension == ".gz" || file.filename().string().find("-ubyte") != std::string::npos)
    return " (give the folder that holds the four IDX files)";
  return " (--data takes an IDX or image folder, or an .npz)";
}

}  // namespace

DataFiles locate_data(const std::optional<fs::path>& explicit_folder) {
  if (explicit_folder) {
    std::error_code ec;
    if (!fs::exists(*explicit_folder, ec)) {
      throw Error("--data " + explicit_folder->string() + ": no such folder");
    }
    if (!fs::is_directory(*explicit_folder, ec)) {
      throw Error("--data " + explicit_folder->string() + ": not a folder" +
                  what_else_a_file_takes(*explicit_folder));
    }
    if (auto files = find_data_files(*explicit_folder)) return *files;
    std::string missing;
    for (const char* name : kFileNames) {
      if (!find_one(*explicit_folder, name))
        missing += std::string(missing.empty() ? "" : ", ") + name + "[.gz]";
    }
    throw Error("--data " + explicit_folder->string() + ": missing " + missing);
  }
  std::string looked;
  for (const fs::path& folder : default_data_folders()) {
    if (auto files = find_data_files(folder)) return *files;
    looked += (looked.empty() ? "" : ", ") + folder.string();
  }
  throw Error("no Fashion-MNIST data found (looked in " + looked +
              "); install it with 'apt-get install dataset-fashion-mnist' or pass --data DIR");
}

TrainTestData load_train_test(const DataFiles& files, int num_classes) {
  auto test_future = std::async(
      std::launch::async, [&] { return load_dataset(files.test_images, files.test_labels, num_classes); });
  Dataset train = load_dataset(files.train_images, files.train_labels, num_classes);
  Dataset test = test_future.get();
  if (train.height != test.height || train.width != test.width) {
    throw Error::in_file(files.test_images, "images are " + std::to_string(test.height) + "x" +
                                                std::to_string(test.width) + " but the training images are " +
                                                std::to_string(train.height) + "x" +
                                                std::to_string(train.width));
  }
  return {std::move(train), std::move(test)};
}

std::vector<std::int64_t> examples_per_class(const Dataset& data) {
  std::vector<std::int64_t> counts(static_cast<std::size_t>(data.num_classes), 0);
  for (Label label : data.labels)
    ++counts[label];
  return counts;
}

DatasetStats dataset_stats(const Dataset& data) {
  DatasetStats stats;
  stats.per_class = examples_per_class(data);
  const std::size_t values = data.count * data.features();
  if (values == 0) return stats;
  if (data.element == ElementType::kU8) {
    std::uint64_t sum = 0;
    for (std::uint8_t p : data.pixels)
      sum += p;
    stats.mean_pixel = static_cast<double>(sum) / static_cast<double>(values) / 255.0;
  } else {
    double sum = 0;
    for (std::size_t i = 0; i < data.count; ++i)
      for (std::size_t d = 0; d < data.features(); ++d)
        sum += data.value(i, d);
    stats.mean_pixel = sum / static_cast<double>(values);
  }
  return stats;
}

Dataset synthetic_dataset(std::size_t count, std::size_t features, int classes, ElementType element,
                          std::uint64_t seed) {
  Dataset set;
  set.count = count;
  set.height = 1;
  set.width = features;
  set.num_classes = classes;
  set.kind = InputKind::kFeatures;
  set.element = element;
  set.labels.resize(count);
  // In 2 MB pages, as a data set of this size mapped by map_file comes (see zeroed_bytes): the shapes
  // `softreg bench` times on synthetic data stand for users' files.
  std::vector<std::uint8_t> raw = zeroed_bytes(count * set.row_bytes());
  for (std::size_t i = 0; i < count; ++i) {
    const auto label = static_cast<Label>(i % static_cast<std::size_t>(classes));
    set.labels[i] = label;
    std::uint64_t state = seed * 0x9e3779b97f4a7c15ull + i;
    for (std::size_t d = 0; d < features; ++d) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const auto noise = static_cast<std::uint32_t>(state >> 57);  // 0..127
      // The class's pattern: half of the features, chosen by a hash of (class, feature), are raised.
      std::uint64_t h = (static_cast<std::uint64_t>(d) << 16 | label) + 0x9e3779b97f4a7c15ull;  // splitmix64
      h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
      h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
      h ^= h >> 31;
      const std::uint32_t value = noise + static_cast<std::uint32_t>(h & 1) * 128;  // 0..255
      if (element == ElementType::kU8) {
        raw[i * features + d] = static_cast<std::uint8_t>(value);
      } else {
        const float v = static_cast<float>(value) / 255.0f;
        std::memcpy(raw.data() + (i * features + d) * sizeof(float), &v, sizeof(float));
      }
    }
  }
  set.pixels = std::move(raw);
  return set;
}

std::vector<std::uint32_t> stratified_holdout(const Dataset& data, double fraction, std::uint64_t seed) {
  // Its own generator (not the run's), so a hold-out leaves the initial weights and shuffles alone.
  Rng rng(seed ^ 0x76616c6964617465ull);  // "validate"
  std::vector<std::vector<std::uint32_t>> by_class(static_cast<std::size_t>(data.num_classes));
  for (std::size_t i = 0; i < data.count; ++i)
    by_class[data.labels[i]].push_back(static_cast<std::uint32_t>(i));
  std::vector<std::uint32_t> held;
  for (std::vector<std::uint32_t>& rows : by_class) {
    rng.shuffle(rows);
    const auto take = static_cast<std::size_t>(std::llround(fraction * static_cast<double>(rows.size())));
    held.insert(held.end(), rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(take));
  }
  std::sort(held.begin(), held.end());
  return held;
}

std::vector<std::uint32_t> stratified_holdout_of_some(const Dataset& data, double fraction,
                                                      std::uint64_t seed, std::string_view part) {
  std::vector<std::uint32_t> held = stratified_holdout(data, fraction, seed);
  if (held.empty()) {
    throw Error(
        fmt::format("a {} fraction of {} holds out none of the {} training examples (each class "
                    "gives its share, rounded): give a larger one or a {} set",
                    part, fraction, data.count, part));
  }
  if (held.size() == data.count) {
    throw Error(
        fmt::format("a {} fraction of {} holds out all {} training examples, leaving none to train on", part,
                    fraction, data.count));
  }
  return held;
}

Dataset subset(const Dataset& data, std::span<const std::uint32_t> rows) {
  Dataset part;
  part.count = rows.size();
  part.height = data.height;
  part.width = data.width;
  part.num_classes = data.num_classes;
  part.kind = data.kind;
  part.element = data.element;
  part.class_names = data.class_names;
  part.feature_names = data.feature_names;
  part.label_name = data.label_name;
  const std::size_t row_bytes = data.row_bytes();
  std::vector<std::uint8_t> pixels(rows.size() * row_bytes);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::copy(data.image(rows[i]), data.image(rows[i]) + row_bytes,
              pixels.begin() + static_cast<std::ptrdiff_t>(i * row_bytes));
    part.labels.push_back(data.labels[rows[i]]);
  }
  part.pixels = std::move(pixels);
  return part;
}

}  // namespace softreg
