// Model files: safetensors round trip, a hand-written file, each kind of corrupt file, checkpoints
// that resume bit for bit, and the classification report.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "softreg/error.hpp"
#include "softreg/metrics.hpp"
#include "softreg/model_io.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

using test::expect_error;

ModelFile small_model() {
  ModelFile file;
  Rng rng(3);
  file.model = SoftmaxModel::initialized(6, 3, 1.0, rng);
  file.model.b << 0.5f, -0.25f, 1e-30f;
  file.class_names = {"cat", "chicken", "dog"};
  file.height = 2;
  file.width = 3;
  file.metadata["note"] = "hello";
  return file;
}

// A safetensors file from a header text and raw little-endian float data.
std::string safetensors_bytes(const std::string& header, const std::vector<float>& values) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  for (int b = 0; b < 8; ++b)
    out[static_cast<std::size_t>(b)] = static_cast<char>((n >> (8 * b)) & 0xff);
  out += header;
  std::string data(values.size() * 4, '\0');
  std::memcpy(data.data(), values.data(), data.size());  // x86-64 and aarch64 are little-endian
  return out + data;
}

TEST(ModelIo, RoundTripIsBitExact) {
  const ModelFile original = small_model();
  test::TempDir dir;
  save_model(dir / "m.safetensors", original);
  const ModelFile loaded = load_model(dir / "m.safetensors");
  EXPECT_EQ(std::memcmp(loaded.model.W.data(), original.model.W.data(), 18 * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(loaded.model.b.data(), original.model.b.data(), 3 * sizeof(float)), 0);
  EXPECT_EQ(loaded.class_names, original.class_names);
  EXPECT_EQ(loaded.height, 2);
  EXPECT_EQ(loaded.width, 3);
  EXPECT_EQ(loaded.metadata.at("note"), "hello");
  EXPECT_EQ(loaded.metadata.at("format_version"), "1");
  EXPECT_EQ(loaded.metadata.at("pixel_scale"), "x/255");
  // Saving what was loaded gives the same bytes.
  EXPECT_EQ(serialize_model(loaded), serialize_model(original));
}

TEST(ModelIo, FeatureNamesRoundTripAndAreChecked) {
  ModelFile file = small_model();
  file.feature_names = {"a", "b", "c", "d", "e", "f"};
  file.label_name = "kind";
  const ModelFile loaded = parse_model(serialize_model(file), "m");
  EXPECT_EQ(loaded.feature_names, file.feature_names);
  EXPECT_EQ(loaded.label_name, "kind");
  EXPECT_TRUE(parse_model(serialize_model(small_model()), "m").feature_names.empty());
  file.feature_names.pop_back();  // five names for six inputs
  test::expect_error([&] { parse_model(serialize_model(file), "m"); },
                     "'feature_names' is not a list of 6 names");
  file.feature_names.clear();
  file.metadata["feature_names"] = "not json";
  test::expect_error([&] { parse_model(serialize_model(file), "m"); }, "'feature_names' is not a JSON list");
}

TEST(ModelIo, LayoutIsTorchLinear) {
  const ModelFile file = small_model();
  const std::string bytes = serialize_model(file);
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  EXPECT_EQ(header_size % 8, 0u);  // data 8-byte aligned
  const std::string header = bytes.substr(8, header_size);
  EXPECT_NE(header.find(R"("weight":{"data_offsets":[0,72],"dtype":"F32","shape":[3,6]})"), std::string::npos)
      << header;
  // weight[k][d] is W(d, k): row k of the file holds class k's weights.
  float w12 = 0;
  std::memcpy(&w12, bytes.data() + 8 + header_size + 4 * (1 * 6 + 2), 4);
  EXPECT_EQ(w12, file.model.W(2, 1));
}

TEST(ModelIo, ReadsAHandWrittenFile) {
  // Two classes over four inputs, bias first in the data: offsets, not order, say where tensors are.
  const std::string header = R"({"bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("weight":{"dtype":"F32","shape":[2,4],"data_offsets":[8,40]},)"
                             R"("__metadata__":{"class_names":"[\"no\",\"yes\"]","height":"2","width":"2"}})";
  const std::vector<float> values = {0.5f, -1.5f, 1, 2, 3, 4, 5, 6, 7, 8};
  const ModelFile file = parse_model(safetensors_bytes(header, values), "hand");
  EXPECT_EQ(file.model.classes(), 2);
  EXPECT_EQ(file.model.inputs(), 4);
  EXPECT_EQ(file.model.b(0), 0.5f);
  EXPECT_EQ(file.model.b(1), -1.5f);
  EXPECT_EQ(file.model.W(0, 0), 1.0f);  // weight[0][0]
  EXPECT_EQ(file.model.W(3, 0), 4.0f);  // weight[0][3]
  EXPECT_EQ(file.model.W(0, 1), 5.0f);  // weight[1][0]
  EXPECT_EQ(file.class_names, (std::vector<std::string>{"no", "yes"}));

  // Without softreg's metadata: square images and numbered classes.
  const std::string plain = R"({"weight":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]},)"
                            R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[32,40]}})";
  const ModelFile bare = parse_model(safetensors_bytes(plain, values), "bare");
  EXPECT_EQ(bare.height, 2);
  EXPECT_EQ(bare.width, 2);
  EXPECT_EQ(bare.class_names, (std::vector<std::string>{"0", "1"}));
}

TEST(ModelIo, RejectsEachKindOfCorruptFile) {
  const std::vector<float> ten(10, 1.0f);
  const std::string good_w = R"("weight":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]})";
  const std::string good_b = R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[32,40]})";
  const auto file = [&](const std::string& w, const std::string& b, const std::string& extra = "") {
    return safetensors_bytes("{" + w + "," + b + extra + "}", ten);
  };
  expect_error([] { parse_model("abc", "f"); }, "f: too short for a safetensors file (3 bytes)");
  expect_error([] { parse_model(std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10), "f"); },
               "header length 4294967295 does not fit in the 10-byte file");
  expect_error([&] { parse_model(safetensors_bytes("{\"weight\": [", ten), "f"); },
               "header is not valid JSON");
  expect_error([&] { parse_model(safetensors_bytes("[1, 2]", ten), "f"); }, "header is not a JSON object");
  expect_error([&] { parse_model(safetensors_bytes("{" + good_b + "}", ten), "f"); },
               "has no tensor 'weight'");
  std::string f16 = good_w;
  f16.replace(f16.find("F32"), 3, "F16");
  expect_error([&] { parse_model(file(f16, good_b), "f"); }, "tensor 'weight' has dtype F16, expected F32");
  expect_error(
      [&] {
        parse_model(file(R"("weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,32]})", good_b), "f");
      },
      "tensor 'weight' has 32 data bytes, but its shape needs 24");
  expect_error(
      [&] { parse_model(file(good_w, R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[36,44]})"), "f"); },
      "tensor 'bias' has data_offsets [36, 44] outside the 40 data bytes");
  expect_error(
      [&] { parse_model(file(good_w, R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]})"), "f"); },
      "tensors 'weight' and 'bias' overlap");
  expect_error(
      [&] { parse_model(file(good_w, R"("bias":{"dtype":"F32","shape":[3],"data_offsets":[28,40]})"), "f"); },
      "overlap");
  expect_error(
      [&] {
        parse_model(
            safetensors_bytes(
                "{" + good_w + "," + R"("bias":{"dtype":"F32","shape":[1],"data_offsets":[32,36]})" + "}",
                ten),
            "f");
      },
      "tensor 'bias' has shape [1], expected [2]");
  expect_error(
      [&] {
        parse_model(file(R"("weight":{"dtype":"F32","shape":[8],"data_offsets":[0,32]})", good_b), "f");
      },
      "tensor 'weight' has shape [8], expected [classes, inputs]");
  expect_error(
      [&] { parse_model(file(R"("weight":{"dtype":"F32","shape":[2,4],"data_offsets":[0]})", good_b), "f"); },
      "has no valid data_offsets");
  std::vector<float> with_nan = ten;
  with_nan[3] = std::nanf("");
  expect_error([&] { parse_model(safetensors_bytes("{" + good_w + "," + good_b + "}", with_nan), "f"); },
               "tensor 'weight' holds NaN or infinite values");
  expect_error(
      [&] { parse_model(file(good_w, good_b, R"(,"__metadata__":{"class_names":"[\"a\"]"})"), "f"); },
      "'class_names' is not a list of 2 names");
  expect_error(
      [&] { parse_model(file(good_w, good_b, R"(,"__metadata__":{"height":"3","width":"3"})"), "f"); },
      "__metadata__ says 3x3 images, but 'weight' has 4 inputs");
  expect_error([&] { parse_model(file(good_w, good_b, R"(,"__metadata__":{"format_version":"99"})"), "f"); },
               "model format version 99 is newer than this softreg reads (1)");
  expect_error([&] { parse_model(file(good_w, good_b, R"(,"__metadata__":{"height":3})"), "f"); },
               "__metadata__ 'height' is not a string");
  test::TempDir dir;
  expect_error([&] { load_model(dir / "absent.safetensors"); },
               "absent.safetensors: cannot open for reading");
}

TEST(ModelIo, CheckpointMetadataRoundTrips) {
  TrainConfig config;
  config.lr = 0.05;
  config.batch_size = 100;
  config.epochs = 7;
  config.seed = 12345678901234ull;
  config.threads = 3;
  TrainerState state;
  Rng rng(4);
  state.model = SoftmaxModel::initialized(4, 2, 0.1, rng);
  state.epoch_rng_state = rng.state();
  state.epochs_done = 2;
  state.batches_done = 5;
  state.partial_loss = 0.1 + 0.2;  // not exactly representable in decimal with few digits
  state.partial_correct = 77;
  ModelFile file;
  file.model = state.model;
  file.class_names = {"a", "b"};
  file.height = 2;
  file.width = 2;
  file.metadata = checkpoint_metadata(config, state, nullptr, "/data");
  const ModelFile loaded = parse_model(serialize_model(file), "ckpt");
  const TrainConfig c = config_from_metadata(loaded, "ckpt");
  EXPECT_EQ(c.lr, 0.05);
  EXPECT_EQ(c.batch_size, 100u);
  EXPECT_EQ(c.epochs, 7);
  EXPECT_EQ(c.seed, 12345678901234ull);
  EXPECT_EQ(c.threads, 3);
  const TrainerState s = trainer_state_from(loaded, "ckpt");
  EXPECT_EQ(s.epoch_rng_state, state.epoch_rng_state);
  EXPECT_EQ(s.epochs_done, 2);
  EXPECT_EQ(s.batches_done, 5u);
  EXPECT_EQ(s.partial_loss, 0.1 + 0.2);
  EXPECT_EQ(s.partial_correct, 77);
  EXPECT_EQ(s.model.W, state.model.W);

  ModelFile broken = loaded;
  broken.metadata["batch_size"] = "-3";
  expect_error([&] { config_from_metadata(broken, "ckpt"); },
               "ckpt: __metadata__ 'batch_size' is '-3', expected a number");
  broken.metadata.erase("lr");
  expect_error([&] { config_from_metadata(broken, "ckpt"); }, "__metadata__ has no 'lr'");

  // The compute mode comes back (a resumed bfloat16 run goes on in bfloat16); files written before it
  // existed are float32; an unknown mode is refused.
  EXPECT_EQ(c.compute, "f32");
  TrainConfig bf16 = config;
  bf16.compute = "bf16";
  file.metadata = checkpoint_metadata(bf16, state, nullptr, "/data");
  EXPECT_EQ(config_from_metadata(parse_model(serialize_model(file), "ckpt"), "ckpt").compute, "bf16");
  ModelFile older = loaded;
  older.metadata.erase("compute");
  EXPECT_EQ(config_from_metadata(older, "ckpt").compute, "f32");
  older.metadata["compute"] = "f8";
  expect_error([&] { config_from_metadata(older, "ckpt"); }, "compute");

  // So does the kernel (a resumed run goes on along the path it trained on); older files are fast.
  EXPECT_EQ(c.kernel, KernelChoice::kFast);
  TrainConfig naive = config;
  naive.kernel = KernelChoice::kNaive;
  file.metadata = checkpoint_metadata(naive, state, nullptr, "/data");
  EXPECT_EQ(config_from_metadata(parse_model(serialize_model(file), "ckpt"), "ckpt").kernel,
            KernelChoice::kNaive);
  ModelFile before_kernels = loaded;
  before_kernels.metadata.erase("kernel");
  EXPECT_EQ(config_from_metadata(before_kernels, "ckpt").kernel, KernelChoice::kFast);
  before_kernels.metadata["kernel"] = "gpu";
  expect_error([&] { config_from_metadata(before_kernels, "ckpt"); },
               "'kernel' must be fast or naive, got 'gpu'");
}

TEST(Resume, StoppedAndRestoredTrainingEqualsUninterrupted) {
  const Dataset train = test::random_dataset(700, 5, 5, 3, 21);
  const Dataset test = test::random_dataset(100, 5, 5, 3, 22);
  TrainConfig config;
  config.batch_size = 32;  // 22 batches per epoch, the last of 28
  config.epochs = 3;
  config.seed = 8;
  config.threads = 2;

  Trainer straight(config, train, test);
  std::vector<EpochMetrics> straight_metrics;
  for (int e = 0; e < 3; ++e)
    straight_metrics.push_back(straight.run_epoch().value());

  // Stop in the middle of epoch 2, save through a model file, restore into a new trainer, go on.
  Trainer first(config, train, test);
  first.run_epoch();
  int batches = 0;
  EXPECT_FALSE(first.run_epoch({}, [&] { return ++batches == 9; }).has_value());
  ModelFile file;
  file.model = first.model();
  file.class_names = {"0", "1", "2"};
  file.height = 5;
  file.width = 5;
  file.metadata = checkpoint_metadata(config, first.state(), nullptr, "");
  const ModelFile saved = parse_model(serialize_model(file), "ckpt");

  Trainer second(config_from_metadata(saved, "ckpt"), train, test);
  second.restore(trainer_state_from(saved, "ckpt"));
  EXPECT_EQ(second.epochs_done(), 1);
  const EpochMetrics epoch2 = second.run_epoch().value();
  const EpochMetrics epoch3 = second.run_epoch().value();
  EXPECT_EQ(epoch2.train_loss, straight_metrics[1].train_loss);
  EXPECT_EQ(epoch2.train_acc, straight_metrics[1].train_acc);
  EXPECT_EQ(epoch3.train_loss, straight_metrics[2].train_loss);
  EXPECT_EQ(epoch3.test_acc, straight_metrics[2].test_acc);
  EXPECT_EQ(second.model().W, straight.model().W);
  EXPECT_EQ(second.model().b, straight.model().b);
}

TEST(Metrics, ClassificationReportMatchesHandComputation) {
  // 3 classes, 8 examples.            true:      0  0  0  1  1  2  2  2
  const std::vector<Label> labels = {0, 0, 0, 1, 1, 2, 2, 2};
  const std::vector<Label> predicted = {0, 0, 1, 1, 2, 2, 2, 0};
  const ClassificationReport r = classification_report(labels, predicted, 3);
  EXPECT_EQ(r.confusion, (std::vector<std::vector<std::int64_t>>{{2, 1, 0}, {0, 1, 1}, {1, 0, 2}}));
  EXPECT_DOUBLE_EQ(r.accuracy, 5.0 / 8.0);
  EXPECT_DOUBLE_EQ(r.accuracy_stderr, std::sqrt(5.0 / 8 * 3.0 / 8 / 8));
  // Class 0: predicted 3 times, 2 right -> precision 2/3; 3 examples, 2 found -> recall 2/3.
  EXPECT_DOUBLE_EQ(r.per_class[0].precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(r.per_class[0].recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(r.per_class[0].f1, 2.0 / 3);
  // Class 1: predicted twice, 1 right -> 1/2; 2 examples, 1 found -> 1/2.
  EXPECT_DOUBLE_EQ(r.per_class[1].precision, 0.5);
  EXPECT_DOUBLE_EQ(r.per_class[1].recall, 0.5);
  // Class 2: predicted 3 times, 2 right -> 2/3; 3 examples, 2 found -> 2/3.
  EXPECT_DOUBLE_EQ(r.per_class[2].f1, 2.0 / 3);
  EXPECT_EQ(r.per_class[2].support, 3);

  // A class never predicted and never present: all zeros, no division by zero.
  const ClassificationReport empty = classification_report(labels, predicted, 4);
  EXPECT_EQ(empty.per_class[3].precision, 0.0);
  EXPECT_EQ(empty.per_class[3].f1, 0.0);
}

}  // namespace
}  // namespace softreg
