// A whole training run through the library alone (no CLI): a run folder kept current epoch by epoch,
// a stop request mid-epoch and at an epoch boundary, resume from the folder to the same bits as an
// uninterrupted run, a run without a folder, and the library's evaluation and prediction calls.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "softreg/error.hpp"
#include "softreg/idx.hpp"
#include "softreg/inference.hpp"
#include "softreg/io.hpp"
#include "softreg/run.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

TrainConfig recipe() {
  TrainConfig c;
  c.batch_size = 50;  // 900 = 18 batches
  c.epochs = 4;
  c.lr = 1.0;  // the bands are faint (6 of 64 pixels): the seed's 0.1 would need many more epochs
  c.seed = 12;
  c.threads = 2;
  return c;
}

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class RunTest : public ::testing::Test {
 protected:
  TrainTestData data{test::learnable_8x8(900, 1), test::learnable_8x8(200, 2)};
  test::TempDir dir;
};

TEST_F(RunTest, WritesTheFolderEveryEpochAndFinishesWithChecksPicturesAndSummary) {
  TrainingRun run(recipe(), data,
                  {.folder = dir / "run", .data_folder = "synthetic", .save_every_seconds = 0});
  std::vector<int> epochs_seen;
  std::size_t batches = 0;
  const RunStatus status = run.train({.on_batch =
                                          [&](std::size_t, std::size_t total) {
                                            EXPECT_EQ(total, 900u);
                                            ++batches;
                                          },
                                      .on_epoch =
                                          [&](const EpochMetrics& m) {
                                            epochs_seen.push_back(m.epoch);
                                            // The checkpoint of this epoch is already on disk.
                                            EXPECT_EQ(load_saved_run(dir / "run").state.epochs_done, m.epoch);
                                          },
                                      .should_stop = {}});
  EXPECT_EQ(status, RunStatus::kFinished);
  EXPECT_EQ(epochs_seen, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(batches, 4u * 18u);
  ASSERT_EQ(run.history().size(), 4u);
  EXPECT_LT(run.history().back().train_loss, run.history().front().train_loss);
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "curves.png"));  // the live curves

  const RunReport report = run.finish({.acceptance_checks = true, .pictures = true, .grid = {4, false}});
  EXPECT_EQ(report.pictures, (std::vector<std::string>{"curves.png", "curves.svg", "predictions.png",
                                                       "confusion.png", "confusion.csv", "weights.png"}));
  for (const std::string& name : report.pictures)
    EXPECT_GT(std::filesystem::file_size(dir / "run" / name), 0u) << name;
  ASSERT_EQ(report.summary.checks.size(), 3u);
  EXPECT_TRUE(report.failed_checks.empty());  // the bands make this easy: loss < 0.5, acc > 0.7
  const auto summary = nlohmann::json::parse(file_bytes(dir / "run" / "summary.json"));
  EXPECT_EQ(summary["epochs_done"], 4);
  EXPECT_EQ(summary["data"], "synthetic");
  EXPECT_EQ(summary["checks_passed"], true);
  EXPECT_EQ(report.summary.note, "");  // it learned: better than answering one class
  EXPECT_FALSE(summary.contains("note"));
  EXPECT_EQ(file_bytes(dir / "run" / "summary.json"), summary_json(report.summary));
  EXPECT_EQ(read_metrics_csv(dir / "run" / "metrics.csv").size(), 4u);
  EXPECT_EQ(load_saved_run(dir / "run").config.lr, 1.0);
  const ModelFile model = load_model(dir / "run" / "model.safetensors");
  EXPECT_EQ(model.model.W, run.model().W);
  EXPECT_EQ(model.class_names, default_class_names(10));
  EXPECT_EQ(model.height, 8);
}

TEST_F(RunTest, StoppedAndResumedFromTheFolderEqualsUninterrupted) {
  TrainingRun straight(recipe(), data, {.folder = dir / "straight", .data_folder = "synthetic"});
  ASSERT_EQ(straight.train(), RunStatus::kFinished);
  straight.finish({.acceptance_checks = false, .pictures = false, .grid = {}});

  // Stop in the middle of epoch 2 (after its 7th batch), as Ctrl-C would.
  int asked = 0;
  RunStatus status;
  {
    TrainingRun first(recipe(), data, {.folder = dir / "stopped", .data_folder = "synthetic"});
    status =
        first.train({.on_batch = {}, .on_epoch = {}, .should_stop = [&] { return ++asked == 17 + 1 + 7; }});
    EXPECT_EQ(first.epochs_done(), 1);
  }
  ASSERT_EQ(status, RunStatus::kStopped);
  SavedRun saved = load_saved_run(dir / "stopped");
  EXPECT_EQ(saved.state.epochs_done, 1);
  EXPECT_EQ(saved.state.batches_done, 7u);
  EXPECT_EQ(saved.history.size(), 1u);
  EXPECT_EQ(saved.data_folder, "synthetic");
  EXPECT_EQ(saved.config.epochs, 4);

  // Resume, and stop again at the end of epoch 3 (the question asked after the epoch), with no refresh
  // of the folder due before the end: the stop itself writes the checkpoint.
  {
    TrainingRun second(saved, data, {.save_every_seconds = 1e9});
    EXPECT_EQ(second.folder(), dir / "stopped");
    EXPECT_EQ(second.epochs_saved(), 1);  // the checkpoint resumed from, in its folder
    int epochs_finished = 0;
    EXPECT_EQ(second.train({.on_batch = {},
                            .on_epoch = [&](const EpochMetrics&) { ++epochs_finished; },
                            .should_stop = [&] { return epochs_finished == 2; }}),
              RunStatus::kStopped);
    EXPECT_EQ(second.epochs_done(), 3);
    EXPECT_EQ(second.epochs_saved(), 3);
    EXPECT_EQ(second.state().batches_done, 0u);
  }
  saved = load_saved_run(dir / "stopped");
  EXPECT_EQ(saved.state.epochs_done, 3);
  TrainingRun third(saved, data);
  ASSERT_EQ(third.train(), RunStatus::kFinished);
  third.finish({.acceptance_checks = false, .pictures = false, .grid = {}});

  EXPECT_EQ(third.model().W, straight.model().W);
  EXPECT_EQ(third.model().b, straight.model().b);
  ASSERT_EQ(third.history().size(), 4u);
  for (std::size_t e = 0; e < 4; ++e) {
    EXPECT_EQ(third.history()[e].train_loss, straight.history()[e].train_loss) << e;
    EXPECT_EQ(third.history()[e].test_acc, straight.history()[e].test_acc) << e;
  }
  // The checkpoints hold the same bytes: weights, recipe, state and metrics.
  EXPECT_EQ(file_bytes(dir / "stopped" / "model.safetensors"),
            file_bytes(dir / "straight" / "model.safetensors"));
}

TEST_F(RunTest, TheFolderWaitsForItsIntervalAndHoldsTheSameFilesAtTheEnd) {
  TrainConfig config = recipe();
  config.val_fraction = 0.2;  // best.safetensors too
  TrainingRun every(config, data, {.folder = dir / "every", .save_every_seconds = 0});
  std::vector<int> saved;
  ASSERT_EQ(every.train({.on_batch = {},
                         .on_epoch = [&](const EpochMetrics&) { saved.push_back(every.epochs_saved()); },
                         .should_stop = {}}),
            RunStatus::kFinished);
  EXPECT_EQ(saved, (std::vector<int>{1, 2, 3, 4}));
  const RunSummary every_summary =
      every.finish({.acceptance_checks = false, .pictures = false, .grid = {}}).summary;

  // No refresh is due before the end: the folder stays empty until the last epoch, which writes all.
  TrainingRun lazy(config, data, {.folder = dir / "lazy", .live_curves = true, .save_every_seconds = 1e9});
  std::vector<bool> written;
  ASSERT_EQ(lazy.train({.on_batch = {},
                        .on_epoch =
                            [&](const EpochMetrics&) {
                              written.push_back(std::filesystem::exists(dir / "lazy" / "model.safetensors"));
                              // What a failing run reports as kept: the checkpoint written, not the epochs
                              // run.
                              EXPECT_EQ(lazy.epochs_saved(), written.back() ? lazy.epochs_done() : 0);
                              EXPECT_EQ(std::filesystem::exists(dir / "lazy" / "metrics.csv"),
                                        written.back());
                              EXPECT_EQ(std::filesystem::exists(dir / "lazy" / "curves.png"), written.back());
                            },
                        .should_stop = {}}),
            RunStatus::kFinished);
  EXPECT_EQ(written, (std::vector<bool>{false, false, false, true}));
  const RunSummary lazy_summary =
      lazy.finish({.acceptance_checks = false, .pictures = false, .grid = {}}).summary;
  EXPECT_EQ(every_summary.checkpoints, 4);
  EXPECT_EQ(lazy_summary.checkpoints, 1);

  // The same checkpoint, and a best.safetensors written late that still holds the best epoch's weights,
  // not the last epoch's (these data make the best epoch an earlier one).
  EXPECT_EQ(file_bytes(dir / "lazy" / "model.safetensors"), file_bytes(dir / "every" / "model.safetensors"));
  ASSERT_LT(lazy.best_epoch(), 4);
  EXPECT_EQ(lazy.best_epoch(), every.best_epoch());
  EXPECT_EQ(file_bytes(dir / "lazy" / "best.safetensors"), file_bytes(dir / "every" / "best.safetensors"));
  EXPECT_EQ(trainer_state_from(load_model(dir / "lazy" / "best.safetensors"), "best").epochs_done,
            lazy.best_epoch());
  EXPECT_EQ(read_metrics_csv(dir / "lazy" / "metrics.csv").size(), 4u);
}

TEST_F(RunTest, PicturesDrawnSideBySideAreTheBytesOfOneThreadsPictures) {
  std::vector<std::string> names;
  for (int threads : {1, 2}) {
    TrainConfig config = recipe();
    config.threads = threads;  // the same weights on any thread count; the pictures drawn 1 or 2 at a time
    TrainingRun run(config, data, {.folder = dir / std::to_string(threads)});
    ASSERT_EQ(run.train(), RunStatus::kFinished);
    names = run.finish({.acceptance_checks = false, .pictures = true, .grid = {6, false}}).pictures;
  }
  ASSERT_EQ(names.size(), 6u);
  for (const std::string& name : names) {
    // curves.svg names its surface by cairo's count of surfaces so far in the process: the second run's
    // number is higher. It is drawn alone, before the others, in any case.
    if (name == "curves.svg") continue;
    EXPECT_EQ(file_bytes(dir / "1" / name), file_bytes(dir / "2" / name)) << name;
  }
}

TEST_F(RunTest, MoreEpochsOnAFinishedRun) {
  {
    TrainConfig two = recipe();
    two.epochs = 2;
    TrainingRun run(two, data, {.folder = dir / "run"});
    ASSERT_EQ(run.train(), RunStatus::kFinished);
  }
  SavedRun saved = load_saved_run(dir / "run");
  saved.config.epochs = 4;
  {
    TrainingRun more(saved, data);
    ASSERT_EQ(more.train(), RunStatus::kFinished);
    TrainingRun straight(recipe(), data);
    straight.train();
    EXPECT_EQ(more.model().W, straight.model().W);
    EXPECT_EQ(read_metrics_csv(dir / "run" / "metrics.csv").size(), 4u);
    // While `more` lives it holds the folder: no second run may write there, in this process or another.
    test::expect_error([&] { TrainingRun(load_saved_run(dir / "run"), data); },
                       "another softreg process is training into this run folder");
  }

  saved = load_saved_run(dir / "run");
  saved.config.epochs = 3;  // fewer than done
  test::expect_error([&] { TrainingRun(saved, data); }, "the recipe has 3 epochs, but 4 are already done");
}

TEST_F(RunTest, WithoutAFolderNothingIsWritten) {
  const std::filesystem::path before = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  TrainingRun run(recipe(), data);
  EXPECT_EQ(run.train(), RunStatus::kFinished);
  const RunReport report = run.finish();
  std::filesystem::current_path(before);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  EXPECT_TRUE(report.pictures.empty());
  EXPECT_EQ(report.summary.run_folder, "");
  EXPECT_EQ(report.summary.epochs.size(), 4u);
  EXPECT_EQ(report.summary.checks.size(), 3u);
  EXPECT_GT(report.summary.seconds_train, 0.0);
  // One epoch at a tiny learning rate fails the checks (the loss is still near ln 10), and the report
  // lists exactly the failed ones.
  TrainConfig slow = recipe();
  slow.epochs = 1;
  slow.lr = 0.001;
  TrainingRun barely(slow, data);
  barely.train();
  const RunReport failed = barely.finish();
  ASSERT_FALSE(failed.failed_checks.empty());
  EXPECT_EQ(failed.failed_checks[0].name, "train loss < 0.5");
  EXPECT_GT(failed.failed_checks[0].value, 2.0);
  std::size_t not_passed = 0;
  for (const AcceptanceCheck& c : failed.summary.checks)
    not_passed += !c.passed;
  EXPECT_EQ(failed.failed_checks.size(), not_passed);
  // The same recipe gives the same model with or without a folder.
  TrainingRun with_folder(recipe(), data, {.folder = dir / "f"});
  with_folder.train();
  EXPECT_EQ(with_folder.model().W, run.model().W);
}

TEST_F(RunTest, BadFoldersAreClearErrors) {
  test::expect_error([&] { load_saved_run(dir / "nothing"); }, "nothing: no model.safetensors there");
  TrainingRun run(recipe(), data, {.folder = dir / "run"});
  test::expect_error([&] { run.finish(); }, "no finished epoch");
  std::ofstream(dir / "file") << "x";
  test::expect_error([&] { TrainingRun(recipe(), data, {.folder = dir / "file"}); },
                     "exists and is not a folder");
  test::expect_error(
      [&] {
        TrainingRun(recipe(), data, {.class_names = {"a", "b"}});
      },
      "2 class names for 10 classes");
  // A checkpoint whose metrics.csv lost rows.
  TrainConfig one = recipe();
  one.epochs = 2;
  TrainingRun(one, data, {.folder = dir / "short"}).train();
  write_file_atomic(dir / "short" / "metrics.csv", "epoch,train_loss,train_acc,test_acc,test_loss,seconds\n");
  test::expect_error([&] { load_saved_run(dir / "short"); }, "metrics.csv: has 0 epochs, the checkpoint 2");
  // A file's name that names a folder is said to, before anything is written there.
  test::expect_error([&] { write_file_atomic(dir / "short", "x"); }, "short: is a folder, not a file name");
  // A new run is not started over a finished one (resuming it is another matter).
  const auto model_bytes = read_file_bytes(dir / "short" / "model.safetensors");
  test::expect_error([&] { TrainingRun(one, data, {.folder = dir / "short"}); },
                     "short: holds a run already (model.safetensors); continue it with --resume");
  EXPECT_EQ(read_file_bytes(dir / "short" / "model.safetensors"), model_bytes);
  // A checkpoint resumed on data of another shape names the run and both shapes.
  TrainingRun(one, data, {.folder = dir / "other"}).train();
  const SavedRun saved = load_saved_run(dir / "other");
  const TrainTestData narrow{test::banded_dataset(10, /*side=*/4, /*classes=*/10, /*band=*/2, /*dim=*/4,
                                                  /*bright=*/230, 34),
                             test::banded_dataset(10, 4, 10, 2, 4, 230, 35)};
  test::expect_error([&] { TrainingRun(saved, narrow, {}); },
                     fmt::format("{}: the checkpoint's model has {} inputs and 10 classes, but the "
                                 "data has 16 and 10",
                                 (dir / "other").string(), data.train.features()));
}

TEST(Inference, PredictionsAndEvaluationOfAModel) {
  const Dataset test = test::learnable_8x8(300, 3);
  TrainTestData data{test::learnable_8x8(900, 4), test::learnable_8x8(100, 5)};
  TrainingRun run(recipe(), data);
  run.train();
  ThreadPool pool(2);
  const ModelEvaluation result = evaluate_model(run.model(), test, pool);
  EXPECT_EQ(result.report.count, 300u);
  EXPECT_EQ(result.report.accuracy, result.evaluation.accuracy);
  EXPECT_GT(result.report.accuracy, 0.9);

  const std::vector<Prediction> predictions = predict_rows(run.model(), test, 10, 14);
  ASSERT_EQ(predictions.size(), 5u);
  for (std::size_t i = 0; i < predictions.size(); ++i) {
    const Prediction& p = predictions[i];
    EXPECT_EQ(p.input, "test:" + std::to_string(10 + i));
    EXPECT_EQ(p.label, test.labels[10 + i]);
    double sum = 0;
    for (double q : p.probabilities)
      sum += q;
    EXPECT_NEAR(sum, 1.0, 1e-12);
    const std::vector<int> top = p.top(3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_GE(p.probabilities[top[0]], p.probabilities[top[1]]);
    EXPECT_GE(p.probabilities[top[1]], p.probabilities[top[2]]);
    EXPECT_EQ(top[0], result.evaluation.predictions[10 + i]);
  }
  EXPECT_EQ(predictions[0].top(99).size(), 10u);
  // Ties: the lower class first, whatever k.
  const Prediction tied{"tied", std::nullopt, {0.2, 0.3, 0.1, 0.3, 0.1}};
  EXPECT_EQ(tied.top(5), (std::vector<int>{1, 3, 0, 2, 4}));
  EXPECT_EQ(tied.top(3), (std::vector<int>{1, 3, 0}));
  EXPECT_EQ(tied.top(1), (std::vector<int>{1}));
  EXPECT_TRUE(tied.top(0).empty());
  test::expect_error([&] { predict_rows(run.model(), test, 5, 300); }, "rows 5..300 are not inside the 300");
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

TEST_F(RunTest, ADivergingRunStopsAndKeepsTheLastGoodCheckpoint) {
  TrainConfig one = recipe();
  one.epochs = 1;
  TrainingRun(one, data, {.folder = dir / "run"}).train();
  const std::string good = file_bytes(dir / "run" / "model.safetensors");

  // The same run continued with a learning rate ten thousand times too large.
  SavedRun saved = load_saved_run(dir / "run");
  saved.config.epochs = 2;
  saved.config.lr = 1e4;
  TrainingRun wild(saved, data);
  try {
    wild.train();
    ADD_FAILURE() << "no divergence reported";
  } catch (const TrainingDiverged& e) {
    EXPECT_EQ(e.epoch, 2);
    EXPECT_LE(e.batch, 3u);  // caught within a few batches
    EXPECT_TRUE(!std::isfinite(e.mean_loss) || e.mean_loss > 100 * std::log(10.0));
    EXPECT_NE(std::string(e.what()).find("try a learning rate below 10000"), std::string::npos) << e.what();
  }
  EXPECT_EQ(file_bytes(dir / "run" / "model.safetensors"), good);  // never overwritten
  EXPECT_EQ(read_metrics_csv(dir / "run" / "metrics.csv").size(), 1u);
}

TEST(Trainer, DivergenceIsCaughtOnBothPaths) {
  const TrainTestData data{test::learnable_8x8(600, 5), test::learnable_8x8(100, 6)};
  for (KernelChoice kernel : {KernelChoice::kFast, KernelChoice::kNaive}) {
    for (const char* optimizer : {"sgd", "adam"}) {
      TrainConfig config = recipe();
      config.kernel = kernel;
      config.optimizer = optimizer;
      config.lr = 1e5;
      Trainer trainer(config, data.train, data.test);
      EXPECT_THROW(trainer.run_epoch(), TrainingDiverged) << optimizer;
    }
  }
  // The learning rates of the usual range never trip it.
  TrainConfig brisk = recipe();
  brisk.lr = 3;
  Trainer trainer(brisk, data.train, data.test);
  EXPECT_NO_THROW(trainer.run_epoch());
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

TEST(Validation, ExamplesPerClassCountsEveryClassTheEmptyOnesToo) {
  Dataset data;
  data.num_classes = 4;
  data.labels = {0, 2, 2, 0, 2};
  data.count = data.labels.size();
  EXPECT_EQ(examples_per_class(data), (std::vector<std::int64_t>{2, 0, 3, 0}));
}

TEST(Validation, StratifiedHoldoutIsSeededAndKeepsTheClassShares) {
  const Dataset data = test::learnable_8x8(1000, 21);
  const std::vector<std::uint32_t> held = stratified_holdout(data, 0.2, 7);
  EXPECT_EQ(held, stratified_holdout(data, 0.2, 7));
  EXPECT_NE(held, stratified_holdout(data, 0.2, 8));
  EXPECT_TRUE(std::is_sorted(held.begin(), held.end()));
  const DatasetStats all = dataset_stats(data);
  const Dataset part = subset(data, held);
  const DatasetStats part_stats = dataset_stats(part);
  for (std::size_t k = 0; k < all.per_class.size(); ++k)
    EXPECT_EQ(part_stats.per_class[k], std::llround(0.2 * static_cast<double>(all.per_class[k]))) << k;
  for (std::size_t i = 0; i < held.size(); ++i) {
    EXPECT_EQ(part.labels[i], data.labels[held[i]]);
    EXPECT_TRUE(std::equal(data.image(held[i]), data.image(held[i]) + 64, part.image(i)));
  }
}

TEST(Validation, TheTrainerNeverTrainsOnTheHeldOutRows) {
  const TrainTestData data{test::learnable_8x8(1000, 22), test::learnable_8x8(100, 23)};
  TrainConfig config = recipe();
  config.val_fraction = 0.25;
  Trainer trainer(config, data.train, data.test);
  ASSERT_TRUE(trainer.validation().has_value());
  EXPECT_EQ(trainer.train_count() + trainer.validation()->count, 1000u);
  std::size_t seen = 0;
  const EpochMetrics m = trainer
                             .run_epoch([&](std::size_t done, std::size_t total) {
                               seen = done;
                               EXPECT_EQ(total, trainer.train_count());
                             })
                             .value();
  EXPECT_EQ(seen, trainer.train_count());
  EXPECT_TRUE(m.has_validation);
  EXPECT_GT(m.val_acc, 0.9);
  // Changing the held-out part changes the training: the validation rows were not used.
  TrainConfig other = config;
  other.val_fraction = 0.5;
  Trainer more_held(other, data.train, data.test);
  more_held.run_epoch();
  EXPECT_NE(more_held.model().W, trainer.model().W);
  // Without validation, nothing is held out.
  EXPECT_FALSE(Trainer(recipe(), data.train, data.test).validation().has_value());
  // A fraction that holds out nothing, or everything, says which.
  const Dataset few = test::learnable_8x8(4, 24);
  other.val_fraction = 0.1;
  test::expect_error([&] { Trainer(other, few, data.test); },
                     "a validation fraction of 0.1 holds out none of the 4 training examples");
  other.val_fraction = 0.99;
  test::expect_error(
      [&] { Trainer(other, few, data.test); },
      "a validation fraction of 0.99 holds out all 4 training examples, leaving none to train on");
}

TEST(Validation, AGivenValidationSetIsScoredAndEveryTrainingRowTrained) {
  TrainTestData data{test::learnable_8x8(600, 31), test::learnable_8x8(100, 32),
                     test::learnable_8x8(150, 33)};
  Trainer trainer(recipe(), data.train, data.test, &*data.validation);
  ASSERT_TRUE(trainer.validation().has_value());
  EXPECT_EQ(trainer.train_count(), 600U);  // nothing held out
  EXPECT_EQ(trainer.validation()->count, 150U);
  const EpochMetrics m = trainer.run_epoch().value();
  ASSERT_TRUE(m.has_validation);
  const Evaluation val = evaluate(trainer.model(), *data.validation, trainer.pool(), KernelChoice::kFast);
  EXPECT_DOUBLE_EQ(m.val_acc, val.accuracy);
  EXPECT_NEAR(m.val_loss, val.loss, 1e-9);
  // The same weights as a run without validation: it only scores.
  Trainer plain(recipe(), data.train, data.test);
  plain.run_epoch();
  EXPECT_EQ(plain.model().W, trainer.model().W);
  // A fraction as well, or a set of another shape, is an error.
  TrainConfig both = recipe();
  both.val_fraction = 0.2;
  EXPECT_THROW(Trainer(both, data.train, data.test, &*data.validation), Error);
  const Dataset narrow = test::banded_dataset(10, /*side=*/4, /*classes=*/10, /*band=*/2, /*dim=*/4,
                                              /*bright=*/230, 34);
  EXPECT_THROW(Trainer(recipe(), data.train, data.test, &narrow), Error);
  // A run keeps the best epoch by it, and early stopping may use it.
  TrainConfig config = recipe();
  config.epochs = 40;
  config.early_stop = 2;
  test::TempDir dir;
  TrainingRun run(config, data, {.folder = dir / "run"});
  EXPECT_EQ(run.train(), RunStatus::kFinished);
  EXPECT_TRUE(run.history().front().has_validation);
  EXPECT_GT(run.best_epoch(), 0);
  const RunReport report = run.finish({.acceptance_checks = false, .pictures = false, .grid = {}});
  EXPECT_EQ(report.summary.validation_examples, 150U);
  EXPECT_NE(summary_json(report.summary).find("\"validation_examples\": 150"), std::string::npos);
}

TEST_F(RunTest, EarlyStoppingKeepsTheBestEpoch) {
  TrainConfig config = recipe();
  config.epochs = 40;
  config.val_fraction = 0.2;
  config.early_stop = 2;
  TrainingRun run(config, data, {.folder = dir / "run"});
  EXPECT_EQ(run.train(), RunStatus::kFinished);
  ASSERT_TRUE(run.stopped_early());
  const std::vector<EpochMetrics>& h = run.history();
  ASSERT_LT(h.size(), 40u);
  const int best = run.best_epoch();
  EXPECT_EQ(static_cast<int>(h.size()), best + 2);  // two epochs without a better one
  for (const EpochMetrics& m : h)
    EXPECT_LE(m.val_acc, h[static_cast<std::size_t>(best - 1)].val_acc);
  for (std::size_t e = static_cast<std::size_t>(best); e < h.size(); ++e)
    EXPECT_LT(h[e].val_acc, h[static_cast<std::size_t>(best - 1)].val_acc + 1e-12);
  EXPECT_EQ(run.epochs_done(), best);  // the model went back to the best epoch
  const WeightMatrix kept_W = run.model().W;
  EXPECT_EQ(run.train(), RunStatus::kFinished);  // and stays there
  EXPECT_EQ(run.model().W, kept_W);
  EXPECT_EQ(run.history().size(), h.size());
  const ModelFile kept = load_model(dir / "run" / "model.safetensors");
  EXPECT_EQ(kept.model.W, load_model(dir / "run" / "best.safetensors").model.W);
  EXPECT_EQ(kept.model.W, run.model().W);
  const std::vector<EpochMetrics> csv = read_metrics_csv(dir / "run" / "metrics.csv");
  ASSERT_EQ(csv.size(), h.size());
  EXPECT_TRUE(csv.back().has_validation);
  EXPECT_EQ(csv.back().val_acc, h.back().val_acc);
  const RunReport report = run.finish({.acceptance_checks = true, .pictures = false, .grid = {}});
  EXPECT_EQ(report.summary.best_epoch, best);
  EXPECT_TRUE(report.summary.stopped_early);
  const auto summary = nlohmann::json::parse(file_bytes(dir / "run" / "summary.json"));
  EXPECT_EQ(summary["best_epoch"], best);
  EXPECT_EQ(summary["epochs_done"], best);
  EXPECT_EQ(summary["test_acc"], h[static_cast<std::size_t>(best - 1)].test_acc);
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

TEST(Recipe, EveryFieldHasItsRangeCheckedInOnePlace) {
  // Named, not a temporary in the macro: GCC 12 then reports its strings as maybe uninitialized.
  const TrainConfig seed_recipe;
  EXPECT_NO_THROW(check_recipe(seed_recipe));
  const auto expect_bad = [](auto change, const std::string& message) {
    TrainConfig c;
    change(c);
    test::expect_error([&] { check_recipe(c); }, message);
  };
  expect_bad([](TrainConfig& c) { c.lr = 0; }, "lr must be > 0, got 0");
  expect_bad([](TrainConfig& c) { c.batch_size = 0; }, "batch-size must be >= 1, got 0");
  expect_bad([](TrainConfig& c) { c.epochs = 0; }, "epochs must be between 1 and 1000000, got 0");
  expect_bad([](TrainConfig& c) { c.init_std = 2; }, "init-std must be between 0 and 1, got 2");
  expect_bad([](TrainConfig& c) { c.optimizer = "rmsprop"; }, "optimizer must be one of");
  expect_bad([](TrainConfig& c) { c.beta2 = 1; }, "beta2 must be in [0, 1), got 1");
  expect_bad([](TrainConfig& c) { c.eps = 0; }, "eps must be > 0, got 0");
  expect_bad([](TrainConfig& c) { c.l2 = -1; }, "l2 must be >= 0, got -1");
  expect_bad([](TrainConfig& c) { c.schedule.kind = "linear"; }, "schedule must be one of");
  expect_bad([](TrainConfig& c) { c.schedule.warmup_epochs = 11; },
             "warmup must be between 0 and the number of epochs (10), got 11");
  expect_bad([](TrainConfig& c) { c.schedule.gamma = 0; }, "lr-gamma must be in (0, 1], got 0");
  expect_bad([](TrainConfig& c) { c.val_fraction = 1; }, "val-fraction must be in [0, 1), got 1");
  expect_bad([](TrainConfig& c) { c.max_iter = 0; }, "max-iter must be between 1 and 1000000, got 0");
  expect_bad([](TrainConfig& c) { c.tol = -1; }, "tol must be >= 0, got -1");
  expect_bad([](TrainConfig& c) { c.history_size = 0; }, "history-size must be between 1 and 10000, got 0");
  expect_bad([](TrainConfig& c) { c.compute = "f16"; }, "compute must be f32 or bf16, got f16");

  // A checkpoint's recipe goes through the same check.
  ModelFile file;
  file.model.W = WeightMatrix::Zero(4, 2);
  file.model.b = BiasVector::Zero(2);
  file.metadata = checkpoint_metadata(seed_recipe, TrainerState{}, nullptr, "");
  EXPECT_NO_THROW(config_from_metadata(file, "ckpt"));
  file.metadata["momentum"] = "1";
  test::expect_error([&] { config_from_metadata(file, "ckpt"); },
                     "ckpt: __metadata__ holds an invalid recipe (momentum must be in [0, 1), got 1)");
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

// A run's summary with these train losses by epoch and the last epoch's test accuracy.
RunSummary summary_of(const std::vector<double>& train_losses, double test_acc) {
  RunSummary s;
  s.config.lr = 0.1;
  for (std::size_t e = 0; e < train_losses.size(); ++e)
    s.epochs.push_back(
        {.epoch = static_cast<int>(e + 1), .train_loss = train_losses[e], .test_acc = test_acc});
  return s;
}

TEST(ChanceLevelNote, OnlyForAModelNoBetterThanTheMostCommonClass) {
  const std::vector<std::int64_t> per_class{30, 50, 20};  // class 1 is half of the 100 test rows
  const std::vector<std::string> names{"cat", "dog", "emu"};
  EXPECT_EQ(chance_level_note(summary_of({1.0, 0.9}, 0.51), per_class, names), "");
  EXPECT_EQ(quoted_class_name(1, {"cat", "dog"}), "\"dog\"");
  EXPECT_EQ(quoted_class_name(2, {}), "class 2");
  const std::string unnamed = chance_level_note(summary_of({1.0, 0.9}, 0.5), per_class, {});
  EXPECT_TRUE(
      unnamed.starts_with("test accuracy 0.5000 is no better than always answering class 1, the most "
                          "common class of the test rows (0.5000 of them); "))
      << unnamed;
  EXPECT_NE(chance_level_note(summary_of({1.0, 0.9}, 0.2), per_class, names), "");
  EXPECT_NE(chance_level_note(summary_of({1.0, 0.9}, std::nan("")), per_class, names), "");
  EXPECT_EQ(chance_level_note(summary_of({1.0, 0.9}, 0.2), {0, 0, 0}, names), "");  // no test rows
  EXPECT_EQ(chance_level_note(summary_of({}, 0.2), per_class, names), "");          // no epoch
  // A tie names the first class; the accuracy is compared as a count of rows, not as a fraction.
  EXPECT_NE(chance_level_note(summary_of({1.0, 0.9}, 1.0 / 3.0), {1, 1, 1}, names)
                .find("always answering \"cat\", the most common class of the test rows (0.3333 of them)"),
            std::string::npos);
  EXPECT_EQ(chance_level_note(summary_of({1.0, 0.9}, 2.0 / 3.0), {1, 1, 1}, names), "");
}

TEST(ChanceLevelNote, SaysWhatTheLossesSuggest) {
  const std::vector<std::int64_t> two{50, 50};
  const std::vector<std::string> names{"a", "b"};
  const auto tail = [&](const RunSummary& s) {
    const std::string note = chance_level_note(s, two, names);
    return note.substr(note.find("; ") + 2);
  };
  // Losses that jump: steps too large. ln 2 = 0.6931 is a fresh model's loss for two classes.
  EXPECT_EQ(tail(summary_of({1.2, 0.5, 0.9, 0.4, 0.6}, 0.5)),
            "the train loss rose in 2 of the 4 epochs after the first: the steps are too large for these "
            "features; try --standardize or a smaller --lr than 0.1");
  EXPECT_EQ(tail(summary_of({9.0, 8.0, 7.5}, 0.5)),
            "the train loss ended at 7.5000, above a fresh model's 0.6931: the steps are too large for these "
            "features; try --standardize or a smaller --lr than 0.1");
  EXPECT_EQ(tail(summary_of({0.8, 2.0}, 0.5)),
            "the train loss rose in the second epoch and ended at 2.0000, above a fresh "
            "model's 0.6931: the steps are too large for these features; try --standardize or a smaller --lr "
            "than 0.1");
  // Losses still falling: too few or too small steps. Settled: features that may not tell the classes apart.
  EXPECT_EQ(tail(summary_of({0.69, 0.6, 0.55}, 0.5)),
            "the train loss was still falling (0.6900 to 0.5500): try more --epochs or a larger --lr, or "
            "--standardize");
  EXPECT_EQ(tail(summary_of({0.6932, 0.69315, 0.69314}, 0.5)),
            "the train loss settled at 0.6931: these features may not tell the classes apart, or their scale "
            "hides it: try --standardize");
  EXPECT_EQ(tail(summary_of({0.6}, 0.5)), "after one epoch: try more --epochs, or --standardize");

  // Standardized inputs: --standardize is not suggested again.
  RunSummary standardized = summary_of({1.2, 0.5, 0.6}, 0.5);
  standardized.config.standardize = true;
  EXPECT_EQ(tail(standardized),
            "the train loss rose in 1 of the 2 epochs after the first: the steps are too large for these "
            "features; try a smaller --lr than 0.1");
  standardized.epochs = summary_of({0.6932, 0.6932}, 0.5).epochs;
  EXPECT_EQ(tail(standardized),
            "the train loss settled at 0.6932: these features may not tell the classes apart");

  // L-BFGS has no epochs of steps to read: only what the fit suggests.
  RunSummary lbfgs = summary_of({0.7}, 0.5);
  lbfgs.config.optimizer = "lbfgs";
  EXPECT_EQ(tail(lbfgs),
            "these features may not tell the classes apart, or their scale hides it: try --standardize");
}

}  // namespace
}  // namespace softreg
