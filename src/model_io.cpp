// safetensors reading and writing, with every field of a loaded file checked before use.
#include "softreg/model_io.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "softreg/error.hpp"
#include "softreg/idx.hpp"
#include "softreg/io.hpp"

namespace softreg {
namespace {

using json = nlohmann::json;

// A header larger than this is not one softreg wrote, nor a sane one for a linear model.
constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;
constexpr std::size_t kHeaderLengthBytes = 8;

static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big);

void append_le_floats(std::string& out, const float* values, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t bits = std::bit_cast<std::uint32_t>(values[i]);
    for (int b = 0; b < 4; ++b)
      out.push_back(static_cast<char>((bits >> (8 * b)) & 0xff));
  }
}

float read_le_float(const char* p) {
  std::uint32_t bits = 0;
  for (int b = 0; b < 4; ++b)
    bits |= std::uint32_t{static_cast<unsigned char>(p[b])} << (8 * b);
  return std::bit_cast<float>(bits);
}

struct TensorEntry {
  std::string name;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

TensorEntry parse_tensor_entry(const std::string& name, const json& entry, std::uint64_t data_size,
                               const std::string& source) {
  const auto fail = [&](const std::string& what) {
    return Error(source + ": tensor '" + name + "' " + what);
  };
  if (!entry.is_object()) throw fail("is not a JSON object");
  if (!entry.contains("dtype") || !entry["dtype"].is_string()) throw fail("has no dtype");
  if (entry["dtype"] != "F32")
    throw fail("has dtype " + entry["dtype"].get<std::string>() + ", expected F32");
  if (!entry.contains("shape") || !entry["shape"].is_array()) throw fail("has no shape");
  if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
      entry["data_offsets"].size() != 2 || !entry["data_offsets"][0].is_number_unsigned() ||
      !entry["data_offsets"][1].is_number_unsigned()) {
    throw fail("has no valid data_offsets [begin, end]");
  }
  TensorEntry t;
  t.name = name;
  std::uint64_t elements = 1;
  for (const json& dim : entry["shape"]) {
    if (!dim.is_number_unsigned()) throw fail("has a shape entry that is not a non-negative integer");
    const std::uint64_t d = dim.get<std::uint64_t>();
    if (d != 0 && elements > (std::uint64_t{1} << 40) / d) throw fail("has an implausibly large shape");
    elements *= d;
    t.shape.push_back(static_cast<std::int64_t>(d));
  }
  t.begin = entry["data_offsets"][0].get<std::uint64_t>();
  t.end = entry["data_offsets"][1].get<std::uint64_t>();
  if (t.begin > t.end || t.end > data_size) {
    throw fail(fmt::format("has data_offsets [{}, {}] outside the {} data bytes", t.begin, t.end, data_size));
  }
  if (t.end - t.begin != elements * 4) {
    throw fail(fmt::format("has {} data bytes, but its shape needs {}", t.end - t.begin, elements * 4));
  }
  return t;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  return "[" + fmt::format("{}", fmt::join(shape, ", ")) + "]";
}

int metadata_int(const std::map<std::string, std::string>& meta, const std::string& key,
                 const std::string& source) {
  const auto it = meta.find(key);
  if (it == meta.end()) throw Error(source + ": __metadata__ has no '" + key + "'");
  try {
    std::size_t used = 0;
    const int value = std::stoi(it->second, &used);
    if (used != it->second.size() || value <= 0) throw std::invalid_argument("not positive");
    return value;
  } catch (const std::exception&) {
    throw Error(source + ": __metadata__ '" + key + "' is '" + it->second + "', expected a positive integer");
  }
}

}  // namespace

std::string serialize_model(const ModelFile& file) {
  const SoftmaxModel& m = file.model;
  const std::int64_t K = m.classes(), D = m.inputs();
  std::map<std::string, std::string> metadata = file.metadata;
  metadata["format"] = "softreg";
  metadata["format_version"] = std::to_string(kModelFormatVersion);
  metadata["class_names"] = json(file.class_names).dump();
  if (!file.feature_names.empty()) metadata["feature_names"] = json(file.feature_names).dump();
  if (!file.label_name.empty()) metadata["label_name"] = file.label_name;
  metadata["height"] = std::to_string(file.height);
  metadata["width"] = std::to_string(file.width);
  metadata["input"] = file.input == InputKind::kImages ? "images" : "features";
  // Float64 rows train the model float32 rows would: a reader gives it either.
  metadata["dtype"] =
      std::string(element_name(file.element == ElementType::kF64 ? ElementType::kF32 : file.element));
  if (file.element == ElementType::kU8) {
    metadata["pixel_scale"] = "x/255";  // input bytes 0..255 scaled to [0,1], as torchvision's ToTensor
  } else {
    metadata["pixel_scale"] = "x";  // float32 features as they are
  }
  metadata["layout"] = file.input == InputKind::kImages
                           ? "logits = x @ weight.T + bias, x a row of height*width pixels in row-major order"
                           : "logits = x @ weight.T + bias, x a row of features in file column order";

  const std::uint64_t weight_bytes = static_cast<std::uint64_t>(K * D) * 4;
  json header;
  header["__metadata__"] = metadata;
  header["weight"] = {{"dtype", "F32"}, {"shape", {K, D}}, {"data_offsets", {0, weight_bytes}}};
  header["bias"] = {{"dtype", "F32"}, {"shape", {K}}, {"data_offsets", {weight_bytes, weight_bytes + K * 4}}};
  std::uint64_t offset = weight_bytes + static_cast<std::uint64_t>(K) * 4;
  for (const auto& [name, values] : file.extra_tensors) {
    if (name == "weight" || name == "bias" || name == "__metadata__")
      throw Error("extra tensor name '" + name + "' is taken");
    const std::uint64_t bytes = values.size() * 4;
    header[name] = {{"dtype", "F32"}, {"shape", {values.size()}}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header_text = header.dump();
  // Pad with spaces so the tensor data starts 8-byte aligned, as the reference implementation does.
  header_text.resize((header_text.size() + 7) / 8 * 8, ' ');

  std::string out;
  const std::uint64_t n = header_text.size();
  for (int b = 0; b < 8; ++b)
    out.push_back(static_cast<char>((n >> (8 * b)) & 0xff));
  out += header_text;
  // W is column-major (D,K): each class's D weights are contiguous, i.e. weight[K, D] row-major.
  append_le_floats(out, m.W.data(), static_cast<std::size_t>(K * D));
  append_le_floats(out, m.b.data(), static_cast<std::size_t>(K));
  for (const auto& [name, values] : file.extra_tensors)  // std::map: the order of the offsets above
    append_le_floats(out, values.data(), values.size());
  return out;
}

ModelFile parse_model(std::string_view bytes, const std::string& source) {
  const auto fail = [&](const std::string& what) { return Error(source + ": " + what); };
  if (bytes.size() < kHeaderLengthBytes) {
    throw fail(fmt::format("too short for a safetensors file ({} bytes)", bytes.size()));
  }
  std::uint64_t header_size = 0;
  for (int b = 0; b < 8; ++b)
    header_size |= std::uint64_t{static_cast<unsigned char>(bytes[b])} << (8 * b);
  if (header_size > kMaxHeaderBytes || header_size > bytes.size() - kHeaderLengthBytes) {
    throw fail(fmt::format("header length {} does not fit in the {}-byte file (not a safetensors file?)",
                           header_size, bytes.size()));
  }
  json header;
  try {
    header = json::parse(bytes.substr(kHeaderLengthBytes, header_size));
  } catch (const json::exception& e) {  // parse errors, and numbers too large for a double (1e30816)
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  const std::string_view data = bytes.substr(kHeaderLengthBytes + header_size);

  ModelFile file;
  if (header.contains("__metadata__")) {
    const json& meta = header["__metadata__"];
    if (!meta.is_object()) throw fail("__metadata__ is not a JSON object");
    for (const auto& [key, value] : meta.items()) {
      if (!value.is_string()) throw fail("__metadata__ '" + key + "' is not a string");
      file.metadata[key] = value.get<std::string>();
    }
  }

  std::vector<TensorEntry> tensors;
  for (const auto& [name, entry] : header.items()) {
    if (name != "__metadata__") tensors.push_back(parse_tensor_entry(name, entry, data.size(), source));
  }
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < tensors.size(); ++i) {
    if (tensors[i].begin < tensors[i - 1].end) {
      throw fail("tensors '" + tensors[i - 1].name + "' and '" + tensors[i].name + "' overlap");
    }
  }
  const auto find = [&](const std::string& name) -> const TensorEntry& {
    for (const auto& t : tensors)
      if (t.name == name) return t;
    throw fail("has no tensor '" + name + "'");
  };
  const TensorEntry& weight = find("weight");
  const TensorEntry& bias = find("bias");
  if (weight.shape.size() != 2 || weight.shape[0] < 1 || weight.shape[1] < 1) {
    throw fail("tensor 'weight' has shape " + shape_text(weight.shape) + ", expected [classes, inputs]");
  }
  const std::int64_t K = weight.shape[0], D = weight.shape[1];
  if (bias.shape != std::vector<std::int64_t>{K}) {
    throw fail("tensor 'bias' has shape " + shape_text(bias.shape) + ", expected [" + std::to_string(K) +
               "]");
  }
  file.model.W.resize(D, K);
  file.model.b.resize(K);
  for (std::int64_t i = 0; i < K * D; ++i)
    file.model.W.data()[i] = read_le_float(data.data() + weight.begin + 4 * i);
  for (std::int64_t k = 0; k < K; ++k)
    file.model.b(k) = read_le_float(data.data() + bias.begin + 4 * k);
  if (!file.model.W.allFinite()) throw fail("tensor 'weight' holds NaN or infinite values");
  if (!file.model.b.allFinite()) throw fail("tensor 'bias' holds NaN or infinite values");
  for (const TensorEntry& t : tensors) {
    if (t.name == "weight" || t.name == "bias") continue;
    std::vector<float> values((t.end - t.begin) / 4);
    for (std::size_t i = 0; i < values.size(); ++i)
      values[i] = read_le_float(data.data() + t.begin + 4 * i);
    if (!std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); }))
      throw fail("tensor '" + t.name + "' holds NaN or infinite values");
    file.extra_tensors[t.name] = std::move(values);
  }

  // softreg's own metadata; a plain safetensors file from elsewhere gets square images and numbered classes.
  if (const auto it = file.metadata.find("format_version"); it != file.metadata.end()) {
    const int version = metadata_int(file.metadata, "format_version", source);
    if (version > kModelFormatVersion) {
      throw fail(fmt::format("model format version {} is newer than this softreg reads ({})", version,
                             kModelFormatVersion));
    }
  }
  if (file.metadata.contains("height") || file.metadata.contains("width")) {
    file.height = metadata_int(file.metadata, "height", source);
    file.width = metadata_int(file.metadata, "width", source);
    if (static_cast<std::int64_t>(file.height) * file.width != D) {
      throw fail(fmt::format("__metadata__ says {}x{} images, but 'weight' has {} inputs", file.height,
                             file.width, D));
    }
  } else {
    const auto side = static_cast<int>(std::lround(std::sqrt(static_cast<double>(D))));
    file.height = static_cast<std::int64_t>(side) * side == D ? side : 1;
    file.width = static_cast<int>(D / file.height);
  }
  if (const auto it = file.metadata.find("input"); it != file.metadata.end()) {
    if (it->second != "images" && it->second != "features") {
      throw fail(fmt::format("__metadata__ 'input' is '{}', expected images or features", it->second));
    }
    file.input = it->second == "images" ? InputKind::kImages : InputKind::kFeatures;
  }
  if (const auto it = file.metadata.find("dtype"); it != file.metadata.end()) {
    if (it->second != "u8" && it->second != "f32") {
      throw fail(fmt::format("__metadata__ 'dtype' is '{}', expected u8 or f32", it->second));
    }
    file.element = it->second == "u8" ? ElementType::kU8 : ElementType::kF32;
  }
  // A list of names in the metadata: `count` strings.
  const auto names_of = [&](const std::string& key, std::int64_t count) {
    json names;
    try {
      names = json::parse(file.metadata.at(key));
    } catch (const json::exception&) {
      throw fail(fmt::format("__metadata__ '{}' is not a JSON list", key));
    }
    if (!names.is_array() || names.size() != static_cast<std::size_t>(count) ||
        !std::all_of(names.begin(), names.end(), [](const json& n) { return n.is_string(); })) {
      throw fail(fmt::format("__metadata__ '{}' is not a list of {} names", key, count));
    }
    return names.get<std::vector<std::string>>();
  };
  if (file.metadata.contains("class_names")) {
    file.class_names = names_of("class_names", K);
  } else {
    for (std::int64_t k = 0; k < K; ++k)
      file.class_names.push_back(std::to_string(k));
  }
  if (file.metadata.contains("feature_names")) file.feature_names = names_of("feature_names", D);
  if (const auto it = file.metadata.find("label_name"); it != file.metadata.end())
    file.label_name = it->second;
  return file;
}

void save_model(const std::filesystem::path& path, const ModelFile& file) {
  write_file_atomic(path, serialize_model(file));
}

ModelFile load_model(const std::filesystem::path& path) {
  const std::vector<std::uint8_t> bytes = read_file_bytes(path);
  return parse_model(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                     path.string());
}

std::map<std::string, std::string> checkpoint_metadata(const TrainConfig& config, const TrainerState& state,
                                                       const EpochMetrics* last,
                                                       const std::string& data_folder) {
  std::map<std::string, std::string> meta;
  meta["lr"] = fmt::format("{}", config.lr);
  meta["batch_size"] = std::to_string(config.batch_size);
  meta["epochs"] = std::to_string(config.epochs);
  meta["seed"] = std::to_string(config.seed);
  meta["init_std"] = fmt::format("{}", config.init_std);
  meta["threads"] = std::to_string(config.threads);
  meta["optimizer"] = config.optimizer;
  meta["momentum"] = fmt::format("{}", config.momentum);
  meta["beta1"] = fmt::format("{}", config.beta1);
  meta["beta2"] = fmt::format("{}", config.beta2);
  meta["eps"] = fmt::format("{}", config.eps);
  meta["weight_decay"] = fmt::format("{}", config.weight_decay);
  meta["l2"] = fmt::format("{}", config.l2);
  meta["schedule"] = config.schedule.kind;
  meta["warmup_epochs"] = fmt::format("{}", config.schedule.warmup_epochs);
  meta["lr_step_epochs"] = std::to_string(config.schedule.step_epochs);
  meta["lr_gamma"] = fmt::format("{}", config.schedule.gamma);
  meta["optimizer_steps"] = std::to_string(state.optimizer.steps);
  meta["val_fraction"] = fmt::format("{}", config.val_fraction);
  meta["early_stop"] = std::to_string(config.early_stop);
  meta["max_iter"] = std::to_string(config.max_iter);
  meta["tol"] = fmt::format("{}", config.tol);
  meta["history_size"] = std::to_string(config.history_size);
  meta["standardize"] = config.standardize ? "true" : "false";
  meta["compute"] = config.compute;
  // The path the run trains on: a resumed run goes on along it (the two agree within rounding, not bit
  // for bit, and only the fast one gives the same results on any thread count).
  meta["kernel"] = config.kernel == KernelChoice::kNaive ? "naive" : "fast";
  meta["data_folder"] = data_folder;
  meta["epochs_done"] = std::to_string(state.epochs_done);
  meta["batches_done"] = std::to_string(state.batches_done);
  meta["epoch_rng_state"] = state.epoch_rng_state;
  meta["partial_loss"] = fmt::format("{:a}", state.partial_loss);  // hex: the exact double
  meta["partial_correct"] = std::to_string(state.partial_correct);
  if (last) {
    meta["train_loss"] = fmt::format("{}", last->train_loss);
    meta["train_acc"] = fmt::format("{}", last->train_acc);
    meta["test_loss"] = fmt::format("{}", last->test_loss);
    meta["test_acc"] = fmt::format("{}", last->test_acc);
  }
  return meta;
}

namespace {

const std::string& required(const ModelFile& file, const std::string& key, const std::string& source) {
  const auto it = file.metadata.find(key);
  if (it == file.metadata.end()) {
    throw Error(source + ": __metadata__ has no '" + key + "' (not a checkpoint written by softreg train)");
  }
  return it->second;
}

template <class T>
T parse_number(const ModelFile& file, const std::string& key, const std::string& source) {
  const std::string& text = required(file, key, source);
  const char* begin = text.c_str();
  char* end = nullptr;
  errno = 0;
  T value{};
  if constexpr (std::is_floating_point_v<T>) {
    value = static_cast<T>(std::strtod(begin, &end));
  } else if constexpr (std::is_signed_v<T>) {
    value = static_cast<T>(std::strtoll(begin, &end, 10));
  } else {
    if (text.starts_with('-'))
      end = const_cast<char*>(begin);
    else
      value = static_cast<T>(std::strtoull(begin, &end, 10));
  }
  if (text.empty() || end != begin + text.size() || errno == ERANGE) {
    throw Error(source + ": __metadata__ '" + key + "' is '" + text + "', expected a number");
  }
  return value;
}

}  // namespace

TrainConfig config_from_metadata(const ModelFile& file, const std::string& source) {
  TrainConfig config;
  config.lr = parse_number<double>(file, "lr", source);
  config.batch_size = parse_number<std::size_t>(file, "batch_size", source);
  config.epochs = parse_number<int>(file, "epochs", source);
  config.seed = parse_number<std::uint64_t>(file, "seed", source);
  config.init_std = parse_number<double>(file, "init_std", source);
  config.threads = parse_number<int>(file, "threads", source);
  // Written since the optimizers came; a checkpoint from before has the seed's SGD.
  const auto optional_number = [&](const std::string& key, double fallback) {
    return file.metadata.contains(key) ? parse_number<double>(file, key, source) : fallback;
  };
  if (const auto it = file.metadata.find("optimizer"); it != file.metadata.end())
    config.optimizer = it->second;
  if (const auto it = file.metadata.find("schedule"); it != file.metadata.end())
    config.schedule.kind = it->second;
  config.momentum = optional_number("momentum", config.momentum);
  config.beta1 = optional_number("beta1", config.beta1);
  config.beta2 = optional_number("beta2", config.beta2);
  config.eps = optional_number("eps", config.eps);
  config.weight_decay = optional_number("weight_decay", config.weight_decay);
  config.l2 = optional_number("l2", config.l2);
  config.schedule.warmup_epochs = optional_number("warmup_epochs", config.schedule.warmup_epochs);
  config.schedule.step_epochs =
      static_cast<int>(optional_number("lr_step_epochs", config.schedule.step_epochs));
  config.schedule.gamma = optional_number("lr_gamma", config.schedule.gamma);
  config.val_fraction = optional_number("val_fraction", config.val_fraction);
  config.early_stop = static_cast<int>(optional_number("early_stop", config.early_stop));
  config.max_iter = static_cast<int>(optional_number("max_iter", config.max_iter));
  config.tol = optional_number("tol", config.tol);
  config.history_size = static_cast<int>(optional_number("history_size", config.history_size));
  if (auto it = file.metadata.find("standardize"); it != file.metadata.end()) {
    if (it->second != "true" && it->second != "false")
      throw Error(source + ": __metadata__ 'standardize' must be true or false, got '" + it->second + "'");
    config.standardize = it->second == "true";
  }
  if (auto it = file.metadata.find("compute"); it != file.metadata.end()) config.compute = it->second;
  if (auto it = file.metadata.find("kernel"); it != file.metadata.end()) {  // written since 2026-12-07
    if (it->second != "fast" && it->second != "naive")
      throw Error(source + ": __metadata__ 'kernel' must be fast or naive, got '" + it->second + "'");
    config.kernel = it->second == "naive" ? KernelChoice::kNaive : KernelChoice::kFast;
  }
  try {
    check_recipe(config);
  } catch (const Error& e) {
    throw Error(source + ": __metadata__ holds an invalid recipe (" + e.what() + ")");
  }
  return config;
}

TrainerState trainer_state_from(const ModelFile& file, const std::string& source) {
  TrainerState state;
  state.model = file.model;
  state.epoch_rng_state = required(file, "epoch_rng_state", source);
  state.epochs_done = parse_number<int>(file, "epochs_done", source);
  state.batches_done = parse_number<std::size_t>(file, "batches_done", source);
  state.partial_loss = parse_number<double>(file, "partial_loss", source);
  state.partial_correct = parse_number<std::int64_t>(file, "partial_correct", source);
  if (file.metadata.contains("optimizer_steps"))
    state.optimizer.steps = parse_number<std::int64_t>(file, "optimizer_steps", source);
  for (const auto& [name, values] : file.extra_tensors) {
    if (name.starts_with("optimizer.")) state.optimizer.buffers[name.substr(10)] = values;
  }
  // A standardized run continues from its weights on standardized inputs, not from the folded ones.
  const auto weight = file.extra_tensors.find(kStandardizedWeight);
  const auto bias = file.extra_tensors.find(kStandardizedBias);
  if ((weight == file.extra_tensors.end()) != (bias == file.extra_tensors.end()))
    throw Error(source + ": one of the tensors 'standardized.weight' and 'standardized.bias' is missing");
  if (weight != file.extra_tensors.end()) {
    if (weight->second.size() != static_cast<std::size_t>(file.model.W.size()) ||
        bias->second.size() != static_cast<std::size_t>(file.model.b.size()))
      throw Error(source + ": the standardized weights do not have the shape of 'weight' and 'bias'");
    std::copy(weight->second.begin(), weight->second.end(), state.model.W.data());
    std::copy(bias->second.begin(), bias->second.end(), state.model.b.data());
  }
  if (state.epochs_done < 0 || state.partial_correct < 0)
    throw Error(source + ": __metadata__ holds an invalid training state");
  return state;
}

}  // namespace softreg
