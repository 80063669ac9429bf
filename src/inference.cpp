// Evaluation and prediction with a saved model, on top of the forward kernels.
#include "softreg/inference.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <numeric>
#include <unordered_map>

#include "softreg/error.hpp"
#include "softreg/image.hpp"
#include "softreg/kernels.hpp"
#include "softreg/loss.hpp"
#include "softreg/sources.hpp"

namespace softreg {

std::string recorded_label_column(const ModelFile& model) {
  const auto it = model.metadata.find("data_source");
  if (it == model.metadata.end()) return {};
  const DataSource trained_on = source_from_json(it->second, "the model's data_source");
  return trained_on.uses_csv() ? trained_on.label_column : std::string();
}

SplitData load_split_for_model(const ModelFile& model, const std::optional<DataSource>& given,
                               const std::string& split) {
  if (split != "train" && split != "test" && split != "val")
    throw Error("split must be train, test or val, got '" + split + "'");
  if (given && given->image_height != 0) {
    throw UsageError(
        model.input == InputKind::kImages
            ? fmt::format("--image-size does not apply to a trained model's data: its images are "
                          "read at the model's size, {}x{}",
                          model.height, model.width)
            : "--image-size does not apply to a trained model's data: this model was trained on "
              "feature rows");
  }
  DataSource source;
  const auto recorded = model.metadata.find("data_source");
  if (given && (names_data(*given) || recorded == model.metadata.end())) {
    source = *given;
    // A table's labels are where training found them unless the caller says otherwise.
    if (source.uses_csv() && source.label_column.empty()) source.label_column = recorded_label_column(model);
    // A split drawn with the model's seed: its own data split again is the split it trained beside, not
    // one that puts its training rows among the test rows.
    if (recorded != model.metadata.end())
      source.seed = source_from_json(recorded->second, "the model's data_source").seed;
  } else if (recorded != model.metadata.end()) {
    source = source_from_json(recorded->second, "the model's data_source");  // the data it was trained on
    // Options without data (--skip-bad-images, say) apply to the model's own data, not to the default
    // Fashion-MNIST a source that names no data would find.
    if (given) apply_options(*given, source);
  }
  if (model.input == InputKind::kImages) read_images_at_model_size(model.height, model.width, source);
  check_image_options_apply(source);  // as load_data does, on the paths here that do not call it
  const int K = model.model.classes();
  SplitData result;
  if (split == "val") {
    if (names_test_part_only(source)) {
      throw UsageError("--split val needs the data the model was trained on, but only test rows were given");
    }
    LoadedData loaded = load_data(source);
    const TrainConfig trained = config_from_metadata(model, "the model");
    if (loaded.data.validation) {
      result = {std::move(*loaded.data.validation), loaded.validation_file};
    } else if (trained.val_fraction > 0) {
      // The rows the trainer held out: the same draw from the same training split.
      const std::vector<std::uint32_t> held =
          stratified_holdout(loaded.data.train, trained.val_fraction, trained.seed);
      result = {subset(loaded.data.train, held), loaded.folder};
    } else {
      throw UsageError(fmt::format(
          "--split val: {} has no validation set and the model was trained without --val-fraction",
          loaded.folder.string()));
    }
  } else if (names_test_part_only(source)) {
    // New rows to evaluate on, without the training data: labelled by the model's classes directly.
    if (split == "train") {
      throw UsageError("--split train needs training data, but only test rows were given");
    }
    LoadedData loaded = load_test_part(source, model.class_names, {model.label_name, model.feature_names});
    result = {std::move(loaded.data.test), loaded.test_file};
  } else if (std::error_code ec; source_kind(source) == "images" && source.test_fraction == 0 &&
                                 !std::filesystem::is_directory(*source.data / "train", ec)) {
    // Class folders of images and no train/ in them (or only a test/ or val/ of them): all of it is new rows
    // to evaluate on, at the model's size (a model trained with --test-fraction records that fraction
    // and is split as before).
    if (split == "train") {
      throw UsageError(
          fmt::format("--split train needs training data, but {} holds only class folders to "
                      "evaluate on",
                      source.data->string()));
    }
    ImageFolderOptions options;
    options.height = model.height;
    options.width = model.width;
    options.skip_bad_images = source.skip_bad_images;
    options.threads = source.threads;
    const std::filesystem::path test = image_test_folder(*source.data);
    const std::filesystem::path folder = test.empty() ? *source.data : test;
    result = {std::move(load_image_folder(folder, options).train), folder};
  } else if (source_kind(source) == "idx") {
    // Only the split asked for: the model says how many classes there are and what they are called.
    const DataFiles files = locate_idx_files(source);
    const bool train = split == "train";
    result = {load_dataset(train ? files.train_images : files.test_images,
                           train ? files.train_labels : files.test_labels,
                           source.classes != 0 ? source.classes : K),
              files.folder};
    result.data.class_names = numbered_class_names(result.data.num_classes);
  } else {
    LoadedData loaded = load_data(source);
    const bool test = split == "test";
    result = {test ? std::move(loaded.data.test) : std::move(loaded.data.train),
              test && !loaded.test_file.empty() ? loaded.test_file : loaded.folder};
  }
  const std::filesystem::path& folder = result.folder;
  Dataset& data = result.data;
  const auto D = static_cast<std::size_t>(model.model.inputs());
  if (data.features() != D ||
      (model.input == InputKind::kImages &&
       (static_cast<int>(data.height) != model.height || static_cast<int>(data.width) != model.width))) {
    throw Error::in_file(
        folder, model.input == InputKind::kImages
                    ? fmt::format("images are {}x{}, but the model expects {}x{}", data.height, data.width,
                                  model.height, model.width)
                    : fmt::format("rows have {} features, but the model expects {}", data.features(), D));
  }
  if (!model.feature_names.empty() && !data.feature_names.empty() &&
      data.feature_names != model.feature_names) {
    const auto differ =
        std::mismatch(data.feature_names.begin(), data.feature_names.end(), model.feature_names.begin());
    throw Error::in_file(
        folder, fmt::format("feature column {} is '{}', but the model's is '{}'",
                            differ.first - data.feature_names.begin() + 1, *differ.first, *differ.second));
  }
  if (data.element != model.element) {
    throw Error::in_file(folder, fmt::format("holds {} values, but the model was trained on {}",
                                             element_name(data.element), element_name(model.element)));
  }
  // Classes named by text labels, folder names or classes.txt are the model's classes of the same name;
  // classes that only have numbers are the model's classes of the same number.
  if (data.class_names == numbered_class_names(data.num_classes)) {
    if (data.num_classes > K) {
      throw Error::in_file(
          folder, fmt::format("has labels up to {}, but the model has {} classes", data.num_classes - 1, K));
    }
  } else if (data.class_names != model.class_names) {
    std::vector<Label> to_model(data.class_names.size());
    for (std::size_t k = 0; k < data.class_names.size(); ++k) {
      const auto at = std::find(model.class_names.begin(), model.class_names.end(), data.class_names[k]);
      if (at == model.class_names.end()) {
        throw Error::in_file(
            folder, fmt::format("has class '{}', which the model does not know", data.class_names[k]));
      }
      to_model[k] = static_cast<Label>(at - model.class_names.begin());
    }
    for (Label& label : data.labels)
      label = to_model[label];
  }
  data.num_classes = K;
  data.class_names = model.class_names;
  return result;
}

ModelEvaluation evaluate_model(const SoftmaxModel& model, const Dataset& data, ThreadPool& pool) {
  ModelEvaluation result;
  result.evaluation = evaluate(model, data, pool);
  result.report = classification_report(data.labels, result.evaluation.predictions, model.classes());
  return result;
}

namespace {

// The value a row element has for the model (bytes as training sees them: float(byte) / 255).
inline double row_value(const std::uint8_t* rows, std::size_t i) {
  return static_cast<double>(static_cast<float>(rows[i]) * kPixelScale);
}
inline double row_value(const float* rows, std::size_t i) {
  return rows[i];
}
inline double row_value(const double* rows, std::size_t i) {
  return rows[i];
}

// D = inputs, K = classes; Wt is W transposed to (D,K) row-major doubles, so a row's K sums advance
// together along contiguous memory.
template <typename T>
void exact_logits_rows(const T* rows, std::size_t first, std::size_t last, std::size_t D, std::size_t K,
                       const std::vector<double>& Wt, const SoftmaxModel& model, double* out) {
  for (std::size_t r = first; r < last; ++r) {
    double* logits = out + r * K;
    for (std::size_t k = 0; k < K; ++k)
      logits[k] = model.b(static_cast<Eigen::Index>(k));
    const T* x = rows + r * D;
    for (std::size_t d = 0; d < D; ++d) {
      const double v = row_value(x, d);
      if (v == 0) continue;  // pixels are mostly background; skipping adds nothing either way
      const double* w = Wt.data() + d * K;
      for (std::size_t k = 0; k < K; ++k)
        logits[k] += v * w[k];
    }
  }
}

}  // namespace

void exact_logits(const SoftmaxModel& model, const void* rows, RowValues type, std::size_t count, double* out,
                  ThreadPool& pool) {
  const auto D = static_cast<std::size_t>(model.inputs());
  const auto K = static_cast<std::size_t>(model.classes());
  std::vector<double> Wt(D * K);
  for (std::size_t k = 0; k < K; ++k)
    for (std::size_t d = 0; d < D; ++d)
      Wt[d * K + k] = model.W(static_cast<Eigen::Index>(d), static_cast<Eigen::Index>(k));
  constexpr std::size_t kRowsPerBlock = 256;
  const std::size_t blocks = (count + kRowsPerBlock - 1) / kRowsPerBlock;
  pool.run(blocks, [&](std::size_t block) {
    const std::size_t first = block * kRowsPerBlock, last = std::min(count, first + kRowsPerBlock);
    switch (type) {
      case RowValues::kU8:
        exact_logits_rows(static_cast<const std::uint8_t*>(rows), first, last, D, K, Wt, model, out);
        break;
      case RowValues::kF32:
        exact_logits_rows(static_cast<const float*>(rows), first, last, D, K, Wt, model, out);
        break;
      case RowValues::kF64:
        exact_logits_rows(static_cast<const double*>(rows), first, last, D, K, Wt, model, out);
        break;
    }
  });
}

std::vector<int> Prediction::top(std::size_t k) const {
  std::vector<int> order(probabilities.size());
  std::iota(order.begin(), order.end(), 0);
  // Only the first k in order (ties: the lower class first, as a stable sort of all would give): a full
  // sort of 1,000 classes for every row of a table was two thirds of `softreg predict`'s time.
  const auto middle = order.begin() + static_cast<std::ptrdiff_t>(std::min(k, order.size()));
  std::partial_sort(order.begin(), middle, order.end(), [&](int a, int b) {
    const double pa = probabilities[static_cast<std::size_t>(a)],
                 pb = probabilities[static_cast<std::size_t>(b)];
    return pa > pb || (pa == pb && a < b);
  });
  order.erase(middle, order.end());
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

std::vector<Prediction> predict_feature_file(const ModelFile& model, const std::filesystem::path& path,
                                             const std::string& label_column) {
  if (model.input != InputKind::kFeatures) {
    throw Error::in_file(path, "the model was trained on images: give image files to predict");
  }
  if (is_image_file(path)) {  // else read as a table, and the error would be about its columns
    throw Error::in_file(path,
                         "is an image, but the model was trained on feature rows: give .npy or .csv files");
  }
  const auto D = static_cast<std::size_t>(model.model.inputs());
  Dataset rows;
  std::optional<RawLabels> labels;  // a table's own labels, where it has the label column
  if (path.extension() == ".npy") {
    NpyArray array = read_npy_file(path);
    if (array.shape.size() == 1) array.shape = {1, array.shape[0]};  // one row
    rows = features_from_npy(array, path.string());
  } else {
    // The model's columns by name where the header has them all (others, an id say, unread), or names
    // one of them that is not a number (a header then: the reader names any column it lacks); else
    // feature columns only, or the training layout with a label column. (A column named as a number,
    // "0" say, may be a headerless row's value.)
    const std::vector<std::string> first_cells = csv_first_cells(path);
    const auto named = [&](const std::string& name) {
      return std::find(first_cells.begin(), first_cells.end(), name) != first_cells.end();
    };
    const auto named_as_text = [&](const std::string& name) {
      double number = 0;
      const char* end = name.data() + name.size();
      return named(name) && std::from_chars(name.data(), end, number).ptr != end;
    };
    const std::vector<std::string>& names = model.feature_names;
    if (!names.empty() && label_column.empty() &&
        (std::all_of(names.begin(), names.end(), named) ||
         std::any_of(names.begin(), names.end(), named_as_text))) {
      if (!model.label_name.empty() && named(model.label_name)) {
        CsvTable table = read_csv_file(path, "", 1, {model.label_name, names});
        rows = std::move(table.features);
        labels = std::move(table.labels);
      } else {
        rows = std::move(read_csv_file_without_labels(path, {model.label_name, names}).features);
      }
    } else if (first_cells.size() == D && label_column.empty()) {
      // No label column: read as if a dummy label came first.
      CsvTable table = read_csv_file_without_labels(path);
      rows = std::move(table.features);
    } else {
      // The training layout: the label column is where training found it unless the caller says.
      const std::string column = label_column.empty() ? recorded_label_column(model) : label_column;
      CsvTable table = read_csv_file(path, column);
      rows = std::move(table.features);
      labels = std::move(table.labels);
    }
  }
  if (rows.features() != D) {
    throw Error::in_file(path,
                         fmt::format("rows have {} features, but the model expects {}", rows.features(), D));
  }
  if (rows.element != model.element) {
    throw Error::in_file(path, fmt::format("holds {} values, but the model was trained on {}",
                                           element_name(rows.element), element_name(model.element)));
  }
  rows.num_classes = model.model.classes();
  rows.labels.assign(rows.count, 0);
  // A row's label as one of the model's classes, by its name (a number by its digits): shown beside the
  // prediction as --index shows a test row's; none for a label the model does not know.
  std::unordered_map<std::string, int> class_of_name;  // looked up once a row, not searched
  for (std::size_t k = 0; k < model.class_names.size(); ++k)
    class_of_name.emplace(model.class_names[k], static_cast<int>(k));
  const auto true_class = [&](std::size_t i) -> std::optional<int> {
    if (!labels || labels->size() != rows.count) return std::nullopt;
    const auto it =
        class_of_name.find(labels->is_text ? labels->text[i] : std::to_string(labels->numbers[i]));
    if (it == class_of_name.end()) return std::nullopt;
    return it->second;
  };
  std::vector<Prediction> predictions;
  constexpr std::size_t kBlock = 1024;
  for (std::size_t begin = 0; begin < rows.count; begin += kBlock) {
    const std::size_t end = std::min(rows.count, begin + kBlock);
    const RowMatrix<float> logits = logits_of_rows(rows, begin, end, model.model);
    for (std::size_t i = begin; i < end; ++i) {
      predictions.push_back(
          {fmt::format("{}:{}", path.string(), i), true_class(i),
           probabilities_from_logits(logits.row(static_cast<Eigen::Index>(i - begin)).data(),
                                     model.model.classes())});
    }
  }
  return predictions;
}

namespace {

Prediction predict_gray_image(const ModelFile& model, const GrayImage& decoded, std::string input,
                              bool invert_image) {
  GrayImage image = resize_area(decoded, model.width, model.height);
  if (invert_image) invert(image);
  Dataset one;
  one.count = 1;
  one.height = static_cast<std::size_t>(model.height);
  one.width = static_cast<std::size_t>(model.width);
  one.num_classes = model.model.classes();
  one.pixels = std::move(image.pixels);
  one.labels = {0};
  const RowMatrix<float> logits = logits_of_rows(one, 0, 1, model.model);
  return {std::move(input), std::nullopt, probabilities_from_logits(logits.data(), model.model.classes())};
}

// A light object on black is what the model saw in training: transparent parts are black, or white
// when the image is about to be inverted.
DecodeOptions decode_options_for(bool invert_image, int max_side) {
  return {.background = static_cast<std::uint8_t>(invert_image ? 255 : 0), .max_side = max_side};
}

}  // namespace

Prediction predict_image_file(const ModelFile& model, const std::filesystem::path& path, bool invert_image) {
  if (is_feature_file(path)) {
    throw Error::in_file(path, "holds feature rows, but the model was trained on images: give image files");
  }
  return predict_gray_image(model, read_gray_image(path, decode_options_for(invert_image, kMaxImageSide)),
                            path.string(), invert_image);
}

Prediction predict_image_bytes(const ModelFile& model, std::span<const std::uint8_t> file,
                               const std::string& source, bool invert_image, int max_side) {
  return predict_gray_image(model,
                            decode_gray_image(file, source, decode_options_for(invert_image, max_side)),
                            source, invert_image);
}

}  // namespace softreg
