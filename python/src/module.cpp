// softreg._core: the C++ library seen from Python. Only what the pure-Python layer (softreg/*.py) needs:
// fitting on NumPy rows (read in place, the GIL released, Ctrl-C honoured between batches), logits in
// double precision, model files and the data sets by name. Checking and converting user input is the
// Python layer's job (scikit-learn's validation); here arrays must already be what the kernels read.
// N = rows, D = inputs, K = classes; coef is (K,D) row-major, which is also W (D,K) column-major.
#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <signal.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "softreg/dataset.hpp"
#include "softreg/download.hpp"
#include "softreg/error.hpp"
#include "softreg/inference.hpp"
#include "softreg/kernels.hpp"
#include "softreg/model_io.hpp"
#include "softreg/parallel.hpp"
#include "softreg/run.hpp"
#include "softreg/sources.hpp"

namespace py = pybind11;

namespace softreg::python {
namespace {

// Ctrl-C during a long call. Python's own SIGINT handler only sets a flag that is read with the GIL
// held, and taking the GIL after every batch waits for any other busy Python thread (5 ms a time).
// So while the call runs on the main thread, a C handler notes SIGINT in an atomic flag that the
// loop reads freely; afterwards the handler is put back and the interrupt handed to Python's own
// (KeyboardInterrupt, or whatever handler the program installed).
std::atomic<bool> sigint_seen{false};
extern "C" void note_sigint(int) {
  sigint_seen.store(true);
}

class CtrlC {
 public:
  CtrlC() {
    const py::module_ threading = py::module_::import("threading");
    if (!threading.attr("current_thread")().is(threading.attr("main_thread")())) return;  // not ours
    struct sigaction current {};
    if (sigaction(SIGINT, nullptr, &current) != 0 || current.sa_handler == SIG_IGN) return;
    sigint_seen = false;
    struct sigaction noting {};
    noting.sa_handler = note_sigint;
    sigemptyset(&noting.sa_mask);
    active_ = sigaction(SIGINT, &noting, &saved_) == 0;
  }
  ~CtrlC() { restore(); }
  CtrlC(const CtrlC&) = delete;
  CtrlC& operator=(const CtrlC&) = delete;

  bool requested() const { return active_ && sigint_seen.load(); }
  // With the GIL, after the call: raises KeyboardInterrupt (through Python's handler) if Ctrl-C came.
  void raise_if_requested() {
    const bool seen = requested();
    restore();
    if (!seen) return;
    PyErr_SetInterrupt();
    if (PyErr_CheckSignals() == 0) PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }

 private:
  void restore() {
    if (active_) sigaction(SIGINT, &saved_, nullptr);
    active_ = false;
  }
  bool active_ = false;
  struct sigaction saved_ {};
};

// A 2-D C-contiguous array's rows, unowned: the caller keeps the array alive (and, during a fit,
// referenced by the Python frame that called us).
struct Rows {
  const void* data = nullptr;
  std::size_t count = 0;
  std::size_t features = 0;
  RowValues type = RowValues::kF32;
};

Rows rows_of(const py::array& X) {
  if (X.ndim() != 2) throw py::value_error("X must be 2-D");
  if (!(X.flags() & py::array::c_style)) throw py::value_error("X must be C-contiguous");
  Rows rows{X.data(), static_cast<std::size_t>(X.shape(0)), static_cast<std::size_t>(X.shape(1))};
  if (py::isinstance<py::array_t<std::uint8_t>>(X)) {
    rows.type = RowValues::kU8;
  } else if (py::isinstance<py::array_t<float>>(X)) {
    rows.type = RowValues::kF32;
  } else if (py::isinstance<py::array_t<double>>(X)) {
    rows.type = RowValues::kF64;
  } else {
    throw py::type_error("X must hold uint8, float32 or float64 values");
  }
  return rows;
}

template <typename T>
T item(const py::dict& params, const char* key) {
  if (!params.contains(key)) throw py::key_error(std::string("missing parameter ") + key);
  return params[key].cast<T>();
}

// The recipe from the estimator's parameters (already type-checked in Python); ranges are the
// library's, with the parameter's Python spelling in the message.
TrainConfig config_from(const py::dict& p) {
  TrainConfig c;
  c.lr = item<double>(p, "lr");
  c.batch_size = item<std::size_t>(p, "batch_size");
  c.epochs = item<int>(p, "epochs");
  c.seed = item<std::uint64_t>(p, "seed");
  c.init_std = item<double>(p, "init_std");
  c.threads = item<int>(p, "threads");
  const auto kernel = item<std::string>(p, "kernel");
  if (kernel != "fast" && kernel != "naive")
    throw py::value_error("kernel must be one of fast, naive, got " + kernel);
  c.kernel = kernel == "naive" ? KernelChoice::kNaive : KernelChoice::kFast;
  c.optimizer = item<std::string>(p, "optimizer");
  c.momentum = item<double>(p, "momentum");
  c.beta1 = item<double>(p, "beta1");
  c.beta2 = item<double>(p, "beta2");
  c.eps = item<double>(p, "eps");
  c.weight_decay = item<double>(p, "weight_decay");
  c.l2 = item<double>(p, "l2");
  c.schedule = {item<std::string>(p, "schedule"), item<double>(p, "warmup"), item<int>(p, "lr_step"),
                item<double>(p, "lr_gamma")};
  c.val_fraction = item<double>(p, "val_fraction");
  c.early_stop = item<int>(p, "early_stop");
  c.max_iter = item<int>(p, "max_iter");
  c.tol = item<double>(p, "tol");
  c.history_size = item<int>(p, "history_size");
  c.standardize = item<bool>(p, "standardize");
  c.compute = item<std::string>(p, "compute");
  const auto runaway = item<std::string>(p, "on_runaway_loss");
  if (runaway != "warn" && runaway != "raise")
    throw py::value_error("on_runaway_loss must be one of warn, raise, got " + runaway);
  c.stop_on_runaway_loss = runaway == "raise";
  if (c.optimizer == "lbfgs") c.epochs = 1;  // one full-batch fit, recorded as one epoch (as the CLI)
  try {
    check_recipe(c);
  } catch (const Error& e) {
    std::string message = e.what();  // "batch-size must be >= 1, got 0": the CLI's flag spelling
    for (char& ch : message) {
      if (ch == ' ') break;
      if (ch == '-') ch = '_';
    }
    throw py::value_error(message);
  }
  return c;
}

py::dict params_from(const TrainConfig& c) {
  py::dict p;
  p["lr"] = c.lr;
  p["batch_size"] = c.batch_size;
  p["epochs"] = c.epochs;
  p["seed"] = c.seed;
  p["init_std"] = c.init_std;
  p["kernel"] = c.kernel == KernelChoice::kNaive ? "naive" : "fast";
  p["optimizer"] = c.optimizer;
  p["momentum"] = c.momentum;
  p["beta1"] = c.beta1;
  p["beta2"] = c.beta2;
  p["eps"] = c.eps;
  p["weight_decay"] = c.weight_decay;
  p["l2"] = c.l2;
  p["schedule"] = c.schedule.kind;
  p["warmup"] = c.schedule.warmup_epochs;
  p["lr_step"] = c.schedule.step_epochs;
  p["lr_gamma"] = c.schedule.gamma;
  p["val_fraction"] = c.val_fraction;
  p["early_stop"] = c.early_stop;
  p["max_iter"] = c.max_iter;
  p["tol"] = c.tol;
  p["history_size"] = c.history_size;
  p["standardize"] = c.standardize;
  p["compute"] = c.compute;
  return p;
}

py::array_t<float> coef_of(const WeightMatrix& W) {
  // W (D,K) column-major has the bytes of coef (K,D) row-major.
  py::array_t<float> coef({static_cast<py::ssize_t>(W.cols()), static_cast<py::ssize_t>(W.rows())});
  std::memcpy(coef.mutable_data(), W.data(), sizeof(float) * static_cast<std::size_t>(W.size()));
  return coef;
}

py::array_t<float> vector_of(const float* values, std::size_t size) {
  py::array_t<float> out(static_cast<py::ssize_t>(size));
  std::memcpy(out.mutable_data(), values, sizeof(float) * size);
  return out;
}

SoftmaxModel model_of(const py::array_t<float, py::array::c_style | py::array::forcecast>& coef,
                      const py::array_t<float, py::array::c_style | py::array::forcecast>& intercept) {
  if (coef.ndim() != 2 || intercept.ndim() != 1 || intercept.shape(0) != coef.shape(0))
    throw py::value_error("coef must be (K, D) and intercept (K,)");
  SoftmaxModel model;
  model.W.resize(coef.shape(1), coef.shape(0));
  std::memcpy(model.W.data(), coef.data(), sizeof(float) * static_cast<std::size_t>(coef.size()));
  model.b.resize(intercept.shape(0));
  std::memcpy(model.b.data(), intercept.data(), sizeof(float) * static_cast<std::size_t>(intercept.size()));
  return model;
}

// What a later partial_fit or warm start continues from: the trainer state, as plain picklable values.
py::dict state_to_python(const TrainerState& s) {
  py::dict state;
  state["coef"] = coef_of(s.model.W);  // the parameters (standardized weights in a standardized run)
  state["intercept"] = vector_of(s.model.b.data(), static_cast<std::size_t>(s.model.b.size()));
  state["rng"] = py::bytes(s.epoch_rng_state);
  state["epochs_done"] = s.epochs_done;
  state["optimizer_steps"] = s.optimizer.steps;
  py::dict buffers;
  for (const auto& [name, values] : s.optimizer.buffers)
    buffers[py::str(name)] = vector_of(values.data(), values.size());
  state["optimizer_buffers"] = buffers;
  return state;
}

TrainerState state_from_python(const py::dict& state) {
  TrainerState s;
  s.model =
      model_of(state["coef"].cast<py::array_t<float, py::array::c_style | py::array::forcecast>>(),
               state["intercept"].cast<py::array_t<float, py::array::c_style | py::array::forcecast>>());
  s.epoch_rng_state = state["rng"].cast<std::string>();
  s.epochs_done = state["epochs_done"].cast<int>();
  s.optimizer.steps = state["optimizer_steps"].cast<std::int64_t>();
  for (const auto& [name, values] : state["optimizer_buffers"].cast<py::dict>()) {
    const auto array = values.cast<py::array_t<float, py::array::c_style | py::array::forcecast>>();
    s.optimizer.buffers[name.cast<std::string>()].assign(array.data(), array.data() + array.size());
  }
  return s;
}

// The rows as a Dataset the trainer reads in place (no copy): `keep` owns nothing, the caller's
// array outlives the fit.
Dataset dataset_of(const Rows& rows, const py::array_t<Label>& labels, int classes) {
  if (labels.ndim() != 1 || static_cast<std::size_t>(labels.shape(0)) != rows.count)
    throw py::value_error("y must be 1-D with one label per row of X");
  Dataset data;
  data.count = rows.count;
  data.height = 1;
  data.width = rows.features;
  data.num_classes = classes;
  data.kind = InputKind::kFeatures;
  data.element = rows.type == RowValues::kU8    ? ElementType::kU8
                 : rows.type == RowValues::kF32 ? ElementType::kF32
                                                : ElementType::kF64;
  data.pixels =
      Bytes::view(nullptr, static_cast<const std::uint8_t*>(rows.data), rows.count * data.row_bytes());
  data.labels.assign(labels.data(), labels.data() + labels.size());
  for (Label label : data.labels) {
    if (label >= classes) throw py::value_error("a label is not below the number of classes");
  }
  return data;
}

py::dict epoch_to_python(const EpochMetrics& m) {
  py::dict row;
  row["epoch"] = m.epoch;
  row["train_loss"] = m.train_loss;
  row["train_acc"] = m.train_acc;
  row["seconds"] = m.seconds;
  if (m.has_validation) {
    row["val_loss"] = m.val_loss;
    row["val_acc"] = m.val_acc;
  }
  return row;
}

// Trains on (X, y) and returns the model, the state to continue from and the history. `start`:
// None (the seed's initial weights), a state to warm-start from (fit with warm_start) or, with
// `continue_epochs`, a state whose training goes on for that many more epochs (partial_fit).
py::dict fit(const py::array& X, const py::array_t<Label>& y, int classes, const py::dict& params,
             const py::object& start, int continue_epochs) {
  const Rows rows = rows_of(X);
  TrainConfig config = config_from(params);
  std::optional<TrainerState> state;
  if (!start.is_none()) state = state_from_python(start.cast<py::dict>());
  if (continue_epochs > 0) {
    if (!state) throw py::value_error("nothing to continue from");
    config.epochs = state->epochs_done + continue_epochs;
  }
  TrainTestData data;
  data.train = dataset_of(rows, y, classes);
  // The shape only: no test rows, so no test evaluation (and no copy of the labels).
  data.test = {.height = data.train.height,
               .width = data.train.width,
               .num_classes = classes,
               .kind = data.train.kind,
               .element = data.train.element};

  py::dict result;
  {
    TrainingRun run(config, data, {.live_curves = false, .class_names = numbered_class_names(classes)});
    if (state && continue_epochs > 0) {
      run.trainer().restore(*state);
    } else if (state) {
      run.trainer().warm_start(state->model);
    }
    CtrlC ctrl_c;
    RunCallbacks callbacks;
    callbacks.should_stop = [&ctrl_c] { return ctrl_c.requested(); };  // between batches
    {
      py::gil_scoped_release release;
      run.train(callbacks);
    }
    ctrl_c.raise_if_requested();
    result["coef"] = coef_of(run.model().W);
    result["intercept"] = vector_of(run.model().b.data(), static_cast<std::size_t>(run.model().b.size()));
    result["state"] = state_to_python(run.state());
    py::list history;
    for (const EpochMetrics& m : run.history())
      history.append(epoch_to_python(m));
    result["history"] = history;
    result["epochs_done"] = run.epochs_done();
    result["best_epoch"] = run.best_epoch();
    result["stopped_early"] = run.stopped_early();
    result["runaway_batches"] = run.trainer().runaway_batches();
    if (config.optimizer == "lbfgs") {
      const RunReport report = run.finish({.acceptance_checks = false, .pictures = false});
      if (report.summary.lbfgs) {
        result["lbfgs_iterations"] = report.summary.lbfgs->iterations;
        result["lbfgs_stop_reason"] = report.summary.lbfgs->stop_reason;
      }
    }
  }
  return result;
}

// (N,K) logits in double precision; the GIL is released while they are computed.
py::array_t<double> logits(const py::array& X,
                           const py::array_t<float, py::array::c_style | py::array::forcecast>& coef,
                           const py::array_t<float, py::array::c_style | py::array::forcecast>& intercept,
                           int threads) {
  const Rows rows = rows_of(X);
  const SoftmaxModel model = model_of(coef, intercept);
  if (rows.features != static_cast<std::size_t>(model.inputs()))
    throw py::value_error("X has " + std::to_string(rows.features) + " features, the model " +
                          std::to_string(model.inputs()));
  py::array_t<double> out({static_cast<py::ssize_t>(rows.count), static_cast<py::ssize_t>(model.classes())});
  double* out_data = out.mutable_data();
  {
    py::gil_scoped_release release;
    ThreadPool pool(threads);
    exact_logits(model, rows.data, rows.type, rows.count, out_data, pool);
  }
  return out;
}

void save(const std::string& path, const py::array_t<float, py::array::c_style | py::array::forcecast>& coef,
          const py::array_t<float, py::array::c_style | py::array::forcecast>& intercept,
          const std::vector<std::string>& class_names, int height, int width, const std::string& input,
          const std::string& dtype, const py::dict& params, const py::object& state,
          const std::map<std::string, std::string>& extra_metadata) {
  ModelFile file;
  file.model = model_of(coef, intercept);
  file.class_names = class_names;
  file.height = height;
  file.width = width;
  file.input = input == "images" ? InputKind::kImages : InputKind::kFeatures;
  file.element = dtype == "u8" ? ElementType::kU8 : ElementType::kF32;
  TrainerState trainer_state;
  trainer_state.model = file.model;
  if (!state.is_none()) trainer_state = state_from_python(state.cast<py::dict>());
  file.metadata = checkpoint_metadata(config_from(params), trainer_state, nullptr, "");
  for (const auto& [key, value] : extra_metadata)
    file.metadata[key] = value;
  py::gil_scoped_release release;
  save_model(path, file);
}

py::dict load(const std::string& path) {
  const ModelFile file = load_model(model_file_or_run_folder(path));
  py::dict out;
  out["coef"] = coef_of(file.model.W);
  out["intercept"] = vector_of(file.model.b.data(), static_cast<std::size_t>(file.model.b.size()));
  out["class_names"] = file.class_names;
  out["height"] = file.height;
  out["width"] = file.width;
  out["input"] = file.input == InputKind::kImages ? "images" : "features";
  out["dtype"] = std::string(element_name(file.element));
  out["metadata"] = file.metadata;
  out["feature_names"] = file.feature_names;  // a table's columns (CLI) or a DataFrame's (Python); or empty
  if (file.metadata.contains("lr")) {  // written by training: the recipe and the state to continue from
    out["params"] = params_from(config_from_metadata(file, path));
    TrainerState state = trainer_state_from(file, path);
    if (const auto it = file.extra_tensors.find(kStandardizedWeight); it != file.extra_tensors.end()) {
      // weight/bias act on raw inputs; a standardized run's parameters are these.
      std::memcpy(state.model.W.data(), it->second.data(), sizeof(float) * it->second.size());
      const auto& b = file.extra_tensors.at(kStandardizedBias);
      std::memcpy(state.model.b.data(), b.data(), sizeof(float) * b.size());
    }
    out["state"] = state_to_python(state);
  }
  return out;
}

// Rows of a loaded Dataset as a read-only NumPy view; `owner` keeps the memory (a mapped file) alive.
py::array rows_view(const Dataset& data, const py::object& owner) {
  const auto rows = static_cast<py::ssize_t>(data.count), cols = static_cast<py::ssize_t>(data.features());
  py::array view = data.element == ElementType::kU8
                       ? py::array(py::dtype::of<std::uint8_t>(), {rows, cols}, data.pixels.data(), owner)
                       : py::array(py::dtype::of<float>(), {rows, cols},
                                   reinterpret_cast<const float*>(data.pixels.data()), owner);
  py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return view;
}

py::array labels_view(const Dataset& data, const py::object& owner) {
  py::array view(py::dtype::of<Label>(), {static_cast<py::ssize_t>(data.count)}, data.labels.data(), owner);
  py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return view;
}

// The train and test sets of a data folder found as the CLI finds it (None: the default search for
// Fashion-MNIST), as views of the decoded, memory-mapped data.
py::dict load_data_folder(const std::optional<std::string>& folder, const std::string& dataset,
                          bool skip_bad_images, int image_height, int image_width) {
  DataSource source;
  if (folder) source.data = *folder;
  source.skip_bad_images = skip_bad_images;
  if (!dataset.empty()) source.dataset = known_dataset(dataset).name;
  if (image_height != 0) {
    const std::string kind = source_kind(source);
    if (kind != "images")
      throw Error(fmt::format("image_size applies to image folders only, not to {} data", kind));
    source.image_height = image_height;
    source.image_width = image_width;
  }
  auto loaded = std::make_shared<LoadedData>();
  {
    py::gil_scoped_release release;
    *loaded = load_data(source);
  }
  // One Python object owns the loaded data; every view holds a reference to it.
  const py::capsule owner(new std::shared_ptr<LoadedData>(loaded),
                          [](void* p) { delete static_cast<std::shared_ptr<LoadedData>*>(p); });
  py::dict out;
  out["X_train"] = rows_view(loaded->data.train, owner);
  out["y_train"] = labels_view(loaded->data.train, owner);
  out["X_test"] = rows_view(loaded->data.test, owner);
  out["y_test"] = labels_view(loaded->data.test, owner);
  out["class_names"] = loaded->data.train.class_names;
  out["height"] = loaded->data.train.height;
  out["width"] = loaded->data.train.width;
  out["folder"] = loaded->folder.string();
  out["kind"] = loaded->kind;
  return out;
}

py::list datasets() {
  py::list out;
  for (const KnownDataset& set : known_datasets()) {
    py::dict d;
    d["name"] = set.name;
    d["title"] = set.title;
    d["class_names"] = set.class_names;
    std::vector<std::string> folders;
    for (const auto& f : dataset_folders(set))
      folders.push_back(f.string());
    d["folders"] = folders;
    out.append(d);
  }
  return out;
}

// Downloads a data set by name (as `softreg data download`); Ctrl-C raises KeyboardInterrupt.
std::string download(const std::string& name, const std::optional<std::string>& folder,
                     const std::vector<std::string>& mirrors) {
  const KnownDataset& set = known_dataset(name);
  const std::filesystem::path target = folder ? std::filesystem::path(*folder) : default_download_folder(set);
  DownloadOptions options;
  options.mirrors = mirrors;
  CtrlC ctrl_c;
  options.should_stop = [&ctrl_c] { return ctrl_c.requested(); };
  try {
    py::gil_scoped_release release;
    download_dataset(set, target, options);
  } catch (const DownloadInterrupted&) {
    ctrl_c.raise_if_requested();
    throw;
  }
  return target.string();
}

}  // namespace
}  // namespace softreg::python

PYBIND11_MODULE(_core, m) {
  using namespace softreg::python;
  m.doc() = "softreg's C++ core; use the softreg package, not this module";
  // Translators are tried newest first: the subclass goes after its base.
  py::register_exception<softreg::Error>(m, "Error", PyExc_ValueError);
  py::register_exception<softreg::TrainingDiverged>(m, "TrainingDiverged", PyExc_FloatingPointError);
  m.def("fit", &fit, py::arg("X"), py::arg("y"), py::arg("classes"), py::arg("params"), py::arg("start"),
        py::arg("continue_epochs"));
  m.def("logits", &logits, py::arg("X"), py::arg("coef"), py::arg("intercept"), py::arg("threads"));
  m.def("save", &save);
  m.def("load", &load, py::arg("path"));
  m.def("load_data_folder", &load_data_folder, py::arg("folder"), py::arg("dataset"),
        py::arg("skip_bad_images") = false, py::arg("image_height") = 0, py::arg("image_width") = 0);
  m.def("datasets", &datasets);
  m.def("download", &download, py::arg("name"), py::arg("folder"), py::arg("mirrors"));
  m.def("hardware_threads", &softreg::hardware_threads);
  m.def("bf16_supported", &softreg::fast_bf16_supported);
  m.attr("MAX_CLASSES") = softreg::kMaxClasses;
  m.attr("RUNAWAY_LOSS_FACTOR") = softreg::kRunawayLossFactor;
  m.attr("__version__") = SOFTREG_VERSION;
}
