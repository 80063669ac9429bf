// The dashboard's HTTP server: routes, JSON answers, the live-epoch event stream, predictions, and
// caches of the models and test-set predictions it reads from run folders.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <list>
#include <mutex>
#include <thread>

#include "serve/text.hpp"
#include "serve/web_assets.hpp"
#include "softreg/error.hpp"
#include "softreg/inference.hpp"
#include "softreg/io.hpp"
#include "softreg/model_io.hpp"
#include "softreg/plot.hpp"
#include "softreg/serve.hpp"

// After Eigen (through the softreg headers): httplib brings <resolv.h>, whose _res macro breaks Eigen.
#include <httplib.h>

namespace softreg::serve {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Test images listed for one cell of the confusion matrix, at most.
constexpr std::size_t kMaxCellImages = 200;
// A comment line on an idle event stream this often, so a closed tab is noticed and its thread freed.
constexpr auto kKeepAliveInterval = std::chrono::seconds(5);
// Test images are served enlarged, so that a browser shows them sharp at thumbnail size.
constexpr int kTestImageScale = 2;

void send_json(httplib::Response& res, const json& value, int status = 200) {
  res.status = status;
  res.set_content(json_text(value), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, {{"error", message}}, status);
}

// When a file was last written, and how big it is: a file rewritten by rename changes at least one.
struct FileStamp {
  std::int64_t mtime_ns = -1;
  std::int64_t size = -1;
  bool operator==(const FileStamp&) const = default;
};
FileStamp stamp_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
          static_cast<std::int64_t>(st.st_size)};
}

std::string iso_utc(std::int64_t ns) {
  const std::time_t seconds = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

const char* content_type_of(const fs::path& file) {
  const std::string ext = file.extension().string();
  if (ext == ".png") return "image/png";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".csv") return "text/csv; charset=utf-8";
  if (ext == ".json") return "application/json";
  if (ext == ".txt") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

std::optional<long long> parse_integer(const std::string& text) {
  long long value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A run's test set with the model's prediction for every row, for the confusion matrix and its images.
struct TestView {
  Dataset test;
  std::vector<int> predicted;
  std::vector<std::vector<std::int64_t>> confusion;  // [true][predicted]
};

// Small caches keyed by a file's path and stamp; the least recently used entry goes first.
template <class Value>
class StampedCache {
 public:
  explicit StampedCache(std::size_t capacity) : capacity_(capacity) {}

  template <class Make>
  std::shared_ptr<const Value> get(const fs::path& path, const FileStamp& stamp, Make&& make) {
    {
      std::lock_guard lock(mutex_);
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->path == path && it->stamp == stamp) {
          entries_.splice(entries_.begin(), entries_, it);
          return it->value;
        }
      }
    }
    // Made outside the lock: one slow test-set load does not hold up every other request.
    std::shared_ptr<const Value> value = make();
    std::lock_guard lock(mutex_);
    entries_.remove_if([&](const Entry& e) { return e.path == path; });
    entries_.push_front({path, stamp, value});
    if (entries_.size() > capacity_) entries_.pop_back();
    return value;
  }

 private:
  struct Entry {
    fs::path path;
    FileStamp stamp;
    std::shared_ptr<const Value> value;
  };
  std::size_t capacity_;
  std::mutex mutex_;
  std::list<Entry> entries_;
};

// Thrown by handlers for an answer other than 200; caught in one place.
struct HttpError {
  int status;
  std::string message;
};

}  // namespace

struct Dashboard::Impl {
  ServerOptions options;
  fs::path root;  // canonical
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> listen_returned{false};  // listen_after_bind has returned (it may fail at once)
  int port = 0;
  bool started = false;
  int listen_socket = -1;

  std::atomic<bool> stopping{false};
  std::mutex stop_mutex;
  std::condition_variable stop_changed;
  bool stopped = false;

  StampedCache<ModelFile> models{16};
  StampedCache<TestView> test_views{4};

  explicit Impl(ServerOptions o) : options(std::move(o)) {}

  fs::path run_folder(const std::string& id) const {
    std::optional<fs::path> folder = resolve_run(root, id);
    if (!folder) throw HttpError{404, "no run '" + id + "'"};
    return *folder;
  }

  std::shared_ptr<const ModelFile> model_of(const fs::path& run, const std::string& id) {
    const fs::path file = run / "model.safetensors";
    const FileStamp stamp = stamp_of(file);
    if (stamp.size < 0) throw HttpError{404, "run '" + id + "' has no model.safetensors yet"};
    try {
      return models.get(file, stamp, [&] { return std::make_shared<const ModelFile>(load_model(file)); });
    } catch (const Error& e) {
      throw HttpError{500, e.what()};
    }
  }

  std::shared_ptr<const TestView> test_view_of(const fs::path& run, const std::string& id) {
    const std::shared_ptr<const ModelFile> model = model_of(run, id);
    const fs::path file = run / "model.safetensors";
    try {
      return test_views.get(file, stamp_of(file), [&] {
        auto view = std::make_shared<TestView>();
        view->test = load_split_for_model(*model, std::nullopt, "test").data;
        const int classes = model->model.classes();
        view->confusion.assign(static_cast<std::size_t>(classes),
                               std::vector<std::int64_t>(static_cast<std::size_t>(classes), 0));
        if (view->test.count > 0) {
          const std::vector<Prediction> predictions =
              predict_rows(model->model, view->test, 0, view->test.count - 1);
          view->predicted.reserve(predictions.size());
          for (std::size_t i = 0; i < predictions.size(); ++i) {
            const int predicted = predictions[i].top(1).front();
            view->predicted.push_back(predicted);
            ++view->confusion[view->test.labels[i]][static_cast<std::size_t>(predicted)];
          }
        }
        return std::shared_ptr<const TestView>(std::move(view));
      });
    } catch (const Error& e) {
      throw HttpError{500, std::string("the test set of run '") + id + "': " + e.what()};
    }
  }

  // What the runs table and a run's page show of it.
  json run_summary(const std::string& id, const fs::path& run) {
    json out = {{"id", id}, {"state", run_state_name(run_state(run))}};
    const std::optional<std::string> metrics = read_text(run / "metrics.csv");
    const json rows = json::parse(csv_rows_json(metrics.value_or("")));
    out["epochs_done"] = rows.size();
    out["last"] = rows.empty() ? json(nullptr) : rows.back();
    double seconds = 0;
    for (const json& row : rows) {
      if (row.contains("seconds") && row["seconds"].is_number()) seconds += row["seconds"].get<double>();
    }

    std::int64_t newest =
        std::max(stamp_of(run / "metrics.csv").mtime_ns, stamp_of(run / "summary.json").mtime_ns);
    json summary = nullptr;
    if (const std::optional<std::string> text = read_text(run / "summary.json")) {
      summary = json::parse(*text, nullptr, /*allow_exceptions=*/false);
      if (summary.is_discarded() || !summary.is_object()) summary = nullptr;
    }
    if (summary.is_object()) {
      // Taken as they are, whatever their type: a summary.json edited by hand must not break the listing.
      out["recipe"] =
          summary.contains("recipe") && summary["recipe"].is_object() ? summary["recipe"] : json::object();
      if (summary.contains("seed")) out["recipe"]["seed"] = summary["seed"];
      out["data"] = summary.contains("data") ? summary["data"] : json("");
      out["checks_passed"] = summary.contains("checks_passed") ? summary["checks_passed"] : json(nullptr);
      if (summary.contains("seconds_total") && summary["seconds_total"].is_number())
        seconds = summary["seconds_total"].get<double>();
      if (summary.contains("best_epoch")) out["best_epoch"] = summary["best_epoch"];
      if (summary.contains("note") && summary["note"].is_string()) out["note"] = summary["note"];
    }
    out["seconds"] = seconds;
    if (stamp_of(run / "model.safetensors").size >= 0) {
      try {
        const std::shared_ptr<const ModelFile> model = model_of(run, id);
        if (!out.contains("recipe")) {
          const TrainConfig config = config_from_metadata(*model, "model.safetensors");
          out["recipe"] = json::parse(recipe_json(config));
          out["recipe"]["seed"] = config.seed;
        }
        if (!out.contains("data") && model->metadata.count("data_folder"))
          out["data"] = model->metadata.at("data_folder");
        out["classes"] = model->class_names;
        out["input"] = {{"kind", model->input == InputKind::kImages ? "images" : "features"},
                        {"height", model->height},
                        {"width", model->width},
                        {"features", model->model.inputs()}};
      } catch (const HttpError& e) {
        out["model_error"] = e.message;
      } catch (const Error& e) {
        out["model_error"] = e.what();
      }
      newest = std::max(newest, stamp_of(run / "model.safetensors").mtime_ns);
    }
    out["date"] = newest >= 0 ? json(iso_utc(newest)) : json(nullptr);
    json files = json::array();
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(run, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (resolve_run_file(run, name)) names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    out["files"] = names;
    return out;
  }

  void handle_events(const httplib::Request& req, httplib::Response& res, const std::string& id) {
    const fs::path run = run_folder(id);
    long long after = 0;
    if (req.has_header("Last-Event-ID"))
      after = parse_integer(req.get_header_value("Last-Event-ID")).value_or(0);
    if (req.has_param("after")) {
      const std::optional<long long> given = parse_integer(req.get_param_value("after"));
      if (!given || *given < 0) throw HttpError{400, "after must be an epoch number (0 or more)"};
      after = *given;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto sent = std::make_shared<long long>(after);
    res.set_chunked_content_provider("text/event-stream", [this, run, sent](std::size_t,
                                                                            httplib::DataSink& sink) {
      // An exception must not leave the provider: httplib runs it outside any handler's guard.
      try {
        return stream_epochs(run, *sent, sink);
      } catch (const std::exception& e) {
        const std::string event = fmt::format("event: error\ndata: {}\n\n", json_text({{"error", e.what()}}));
        sink.write(event.data(), event.size());
        sink.done();
        return true;
      }
    });
  }

  // The body of the event stream: each new row of metrics.csv as an epoch event until the run is not
  // training (then an end event), or the server stops. False when the client has gone.
  bool stream_epochs(const fs::path& run, long long& sent, httplib::DataSink& sink) {
    auto last_write = std::chrono::steady_clock::now();
    FileStamp seen;
    while (!stopping.load()) {
      // The state first: a run seen finished (or stopped) before this read of metrics.csv has all
      // its rows in it, so the stream never ends before its last epoch.
      const RunState state = run_state(run);
      const fs::path metrics = run / "metrics.csv";
      const FileStamp stamp = stamp_of(metrics);
      if (!(stamp == seen)) {
        seen = stamp;
        const json rows = json::parse(csv_rows_json(read_text(metrics).value_or("")));
        for (const json& row : rows) {
          // A hand-edited metrics.csv may hold anything: rows without a whole epoch number are passed over.
          if (!row.contains("epoch") || !row["epoch"].is_number_integer()) continue;
          const long long epoch = row["epoch"].get<long long>();
          if (epoch <= sent) continue;
          const std::string event = fmt::format("id: {}\nevent: epoch\ndata: {}\n\n", epoch, json_text(row));
          if (!sink.write(event.data(), event.size())) return false;
          sent = epoch;
          last_write = std::chrono::steady_clock::now();
        }
      }
      if (state != RunState::kTraining) {
        const std::string end =
            fmt::format("event: end\ndata: {}\n\n", json_text({{"state", run_state_name(state)}}));
        sink.write(end.data(), end.size());
        sink.done();
        return true;
      }
      if (std::chrono::steady_clock::now() - last_write >= kKeepAliveInterval) {
        static constexpr std::string_view kComment = ": keep-alive\n\n";
        if (!sink.write(kComment.data(), kComment.size())) return false;
        last_write = std::chrono::steady_clock::now();
      }
      std::unique_lock lock(stop_mutex);
      stop_changed.wait_for(lock, options.poll_interval, [this] { return stopping.load(); });
    }
    sink.done();
    return true;
  }

  void handle_predict(const httplib::Request& req, httplib::Response& res, const std::string& id) {
    const fs::path run = run_folder(id);
    const std::shared_ptr<const ModelFile> model = model_of(run, id);
    if (model->input != InputKind::kImages) {
      throw HttpError{400, "run '" + id + "' is a model of " + std::to_string(model->model.inputs()) +
                               " features, not of images"};
    }
    const int classes = model->model.classes();
    long long k = std::min(classes, 10);
    if (req.has_param("k")) {
      const std::optional<long long> given = parse_integer(req.get_param_value("k"));
      if (!given || *given < 1 || *given > classes)
        throw HttpError{400, fmt::format("k must be a whole number from 1 to {}", classes)};
      k = *given;
    }
    const std::string invert_param = req.has_param("invert") ? req.get_param_value("invert") : "0";
    if (invert_param != "0" && invert_param != "1") throw HttpError{400, "invert must be 0 or 1"};
    if (req.body.empty())
      throw HttpError{400, "the request body must be an image file (PNG, JPEG, BMP, PGM, GIF)"};
    Prediction prediction;
    try {
      prediction = predict_image_bytes(
          *model, std::span(reinterpret_cast<const std::uint8_t*>(req.body.data()), req.body.size()),
          "the uploaded image", invert_param == "1", options.max_image_side);
    } catch (const Error& e) {
      throw HttpError{400, e.what()};
    }
    json top = json::array();
    for (const int c : prediction.top(static_cast<std::size_t>(k))) {
      top.push_back({{"class", c},
                     {"name", model->class_names[static_cast<std::size_t>(c)]},
                     {"prob", prediction.probabilities[static_cast<std::size_t>(c)]}});
    }
    send_json(res, {{"top", top}, {"probabilities", prediction.probabilities}});
  }

  // Runs `handler`, turning HttpError and softreg errors into JSON answers.
  template <class Handler>
  httplib::Server::Handler guarded(Handler handler) {
    return [handler](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const HttpError& e) {
        send_error(res, e.status, e.message);
      } catch (const Error& e) {
        send_error(res, 500, e.what());
      } catch (const std::bad_alloc&) {
        send_error(res, 500, "out of memory");
      } catch (const std::exception& e) {
        send_error(res, 500, std::string("internal error: ") + e.what());
      }
    };
  }

  void add_routes() {
    for (const WebAsset& asset : web_assets()) {
      server.Get(std::string(asset.url), [&asset](const httplib::Request&, httplib::Response& res) {
        res.set_content(reinterpret_cast<const char*>(asset.bytes.data()), asset.bytes.size(),
                        std::string(asset.content_type).c_str());
        res.set_header("Cache-Control", "no-cache");
      });
    }
    server.Get("/api/runs", guarded([this](const httplib::Request&, httplib::Response& res) {
                 json runs = json::array();
                 for (const std::string& id : list_runs(root)) {
                   if (const std::optional<fs::path> run = resolve_run(root, id))
                     runs.push_back(run_summary(id, *run));
                 }
                 send_json(res, {{"root", root.string()}, {"runs", runs}});
               }));
    server.Get(R"(/api/runs/([^/]+))", guarded([this](const httplib::Request& req, httplib::Response& res) {
                 const std::string id = req.matches[1];
                 send_json(res, run_summary(id, run_folder(id)));
               }));
    server.Get(
        R"(/api/runs/([^/]+)/metrics)", guarded([this](const httplib::Request& req, httplib::Response& res) {
          const std::string id = req.matches[1];
          const fs::path run = run_folder(id);
          res.set_content(csv_rows_json(read_text(run / "metrics.csv").value_or("")), "application/json");
        }));
    server.Get(R"(/api/runs/([^/]+)/events)",
               guarded([this](const httplib::Request& req, httplib::Response& res) {
                 handle_events(req, res, req.matches[1]);
               }));
    server.Get(R"(/api/runs/([^/]+)/files/(.*))",
               guarded([this](const httplib::Request& req, httplib::Response& res) {
                 const std::string id = req.matches[1], name = req.matches[2];
                 const std::optional<fs::path> file = resolve_run_file(run_folder(id), name);
                 if (!file) throw HttpError{404, "run '" + id + "' has no file '" + name + "'"};
                 const std::optional<std::string> bytes = read_text(*file);
                 if (!bytes) throw HttpError{404, "run '" + id + "' has no file '" + name + "'"};
                 res.set_content(*bytes, content_type_of(*file));
                 // An SVG is a document that could hold scripts: shown as a picture, never run.
                 res.set_header("Content-Security-Policy",
                                "default-src 'none'; style-src 'unsafe-inline'; img-src data:");
               }));
    server.Post(R"(/api/runs/([^/]+)/predict)",
                guarded([this](const httplib::Request& req, httplib::Response& res) {
                  handle_predict(req, res, req.matches[1]);
                }));
    server.Get(R"(/api/runs/([^/]+)/confusion)",
               guarded([this](const httplib::Request& req, httplib::Response& res) {
                 const std::string id = req.matches[1];
                 const fs::path run = run_folder(id);
                 const std::shared_ptr<const ModelFile> model = model_of(run, id);
                 const std::shared_ptr<const TestView> view = test_view_of(run, id);
                 std::int64_t correct = 0;
                 for (std::size_t c = 0; c < view->confusion.size(); ++c)
                   correct += view->confusion[c][c];
                 send_json(res, {{"classes", model->class_names},
                                 {"matrix", view->confusion},
                                 {"count", view->test.count},
                                 {"accuracy", view->test.count ? static_cast<double>(correct) /
                                                                     static_cast<double>(view->test.count)
                                                               : 0.0},
                                 {"images", model->input == InputKind::kImages}});
               }));
    server.Get(R"(/api/runs/([^/]+)/confusion/(\d+)/(\d+))",
               guarded([this](const httplib::Request& req, httplib::Response& res) {
                 const std::string id = req.matches[1];
                 const fs::path run = run_folder(id);
                 const std::shared_ptr<const TestView> view = test_view_of(run, id);
                 const std::optional<long long> truth = parse_integer(req.matches[2]),
                                                predicted = parse_integer(req.matches[3]);
                 const auto classes = static_cast<long long>(view->confusion.size());
                 if (!truth || !predicted || *truth >= classes || *predicted >= classes)
                   throw HttpError{
                       404, fmt::format("no cell ({}, {}) in a {}-class confusion matrix",
                                        std::string(req.matches[2]), std::string(req.matches[3]), classes)};
                 json indices = json::array();
                 std::size_t count = 0;
                 for (std::size_t i = 0; i < view->test.count; ++i) {
                   if (view->test.labels[i] != *truth || view->predicted[i] != *predicted) continue;
                   if (count++ < kMaxCellImages) indices.push_back(i);
                 }
                 send_json(
                     res,
                     {{"true", *truth}, {"predicted", *predicted}, {"count", count}, {"indices", indices}});
               }));
    server.Get(
        R"(/api/runs/([^/]+)/test-images/(\d+)\.png)",
        guarded([this](const httplib::Request& req, httplib::Response& res) {
          const std::string id = req.matches[1];
          const fs::path run = run_folder(id);
          const std::shared_ptr<const TestView> view = test_view_of(run, id);
          const std::optional<long long> index = parse_integer(req.matches[2]);
          if (view->test.kind != InputKind::kImages || view->test.element != ElementType::kU8)
            throw HttpError{404, "run '" + id + "' has no test images: it is a model of features"};
          if (!index || *index >= static_cast<long long>(view->test.count))
            throw HttpError{404, fmt::format("no test image {} (the test set has {})",
                                             std::string(req.matches[2]), view->test.count)};
          const std::size_t pixels = view->test.features();
          res.set_content(
              plot::gray_image_png(
                  std::span(view->test.pixels.data() + static_cast<std::size_t>(*index) * pixels, pixels),
                  static_cast<int>(view->test.width), static_cast<int>(view->test.height), kTestImageScale),
              "image/png");
          res.set_header("Cache-Control", "max-age=60");
        }));

    // Every answer without a body of its own (404 for an unknown path, 413 for a body over the limit,
    // 400 for a request httplib could not parse) gets a one-line JSON error.
    server.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string message = fmt::format("HTTP status {}", res.status);
      if (res.status == 400) message = "bad request";
      if (res.status == 404) message = "not found: " + req.path;
      if (res.status == 405) message = "method not allowed";
      if (res.status == 413)
        message = fmt::format("the request body is over the {}-byte limit", options.max_body_bytes);
      if (res.status == 414) message = "the request line is too long";
      send_error(res, res.status, message);
    });
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      send_error(res, 500, "internal error");
    });
    server.set_default_headers({{"X-Content-Type-Options", "nosniff"}});
  }
};

Dashboard::Dashboard(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Dashboard::~Dashboard() {
  stop();
}

void Dashboard::start() {
  Impl& d = *impl_;
  if (d.started) return;
  std::error_code ec;
  if (!fs::is_directory(d.options.runs, ec)) throw Error::in_file(d.options.runs, "no such folder (--runs)");
  d.root = fs::canonical(d.options.runs, ec);
  if (ec) throw Error::in_file(d.options.runs, "cannot resolve: " + ec.message());
  // A client that closes its connection mid-answer must not end the process.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, nullptr);

  const int threads = std::max(2, d.options.threads);
  d.server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  d.server.set_payload_max_length(d.options.max_body_bytes);
  const auto timeout = d.options.read_timeout;
  d.server.set_read_timeout(
      std::chrono::duration_cast<std::chrono::seconds>(timeout).count(),
      std::chrono::duration_cast<std::chrono::microseconds>(timeout % std::chrono::seconds(1)).count());
  d.server.set_keep_alive_timeout(
      std::max<time_t>(1, std::chrono::duration_cast<std::chrono::seconds>(timeout).count()));
  d.server.set_write_timeout(5, 0);
  // httplib writes an answer's headers and body separately: without TCP_NODELAY, Nagle's algorithm holds
  // the body until the client's delayed ACK, 40 ms or more per request (measured: 87 ms for one client).
  d.server.set_tcp_nodelay(true);
  // httplib closes a keep-alive connection after 5 requests by default; every reconnection costs a
  // handshake. A connection still ends after its idle timeout, so one client cannot keep a thread for ever.
  d.server.set_keep_alive_max_count(1000);
  // httplib's default socket options add SO_REUSEPORT, with which a second softreg serve on the same port
  // starts silently and takes half the connections; only SO_REUSEADDR (a restart need not wait for
  // TIME_WAIT) is kept. The socket is noted to raise its listen backlog after bind.
  d.server.set_socket_options([&d](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    d.listen_socket = sock;
  });
  d.add_routes();
  if (d.options.port < 0 || d.options.port > 65535)
    throw UsageError(fmt::format("--port must be 0..65535, got {}", d.options.port));
  const std::string address = fmt::format("{}:{}", d.options.host, d.options.port);
  if (d.options.port == 0) {
    d.port = d.server.bind_to_any_port(d.options.host);
    if (d.port <= 0)
      throw Error("cannot listen on " + d.options.host + " (any port): " + std::strerror(errno));
  } else {
    if (!d.server.bind_to_port(d.options.host, d.options.port))
      throw Error(
          "cannot listen on " + address + ": " + std::strerror(errno) +
          " (another softreg serve? port 0 takes any free port)");  // serve --port, train --serve-port
    d.port = d.options.port;
  }
  // httplib listens with a backlog of 5; under 50 clients connecting at once the kernel dropped SYNs
  // (a 1 s retry each, and now and then a reset). listen() again only raises the backlog.
  if (d.listen_socket >= 0) ::listen(d.listen_socket, SOMAXCONN);
  d.thread = std::thread([&d] {
    d.server.listen_after_bind();
    d.listen_returned = true;
  });
  // cpp-httplib 0.11's stop() does nothing before listen_after_bind has marked the server running, and
  // the join in stop() then waits for ever: a Ctrl-C right after the address was printed hung `softreg
  // serve` on a busy machine. So start() returns once the server is listening (or has given up).
  while (!d.server.is_running() && !d.listen_returned)
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  d.started = true;
}

void Dashboard::stop() {
  Impl& d = *impl_;
  {
    std::lock_guard lock(d.stop_mutex);
    d.stopping = true;
    d.stop_changed.notify_all();
  }
  if (d.started) {
    d.server.stop();
    if (d.thread.joinable()) d.thread.join();
    d.started = false;
  }
  std::lock_guard lock(d.stop_mutex);
  d.stopped = true;
  d.stop_changed.notify_all();
}

void Dashboard::wait() {
  Impl& d = *impl_;
  std::unique_lock lock(d.stop_mutex);
  d.stop_changed.wait(lock, [&d] { return d.stopped; });
}

int Dashboard::port() const {
  return impl_->port;
}

std::string Dashboard::url() const {
  const std::string& host = impl_->options.host;
  const bool v6 = host.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}/", v6 ? "[" : "", host, v6 ? "]" : "", impl_->port);
}

}  // namespace softreg::serve
