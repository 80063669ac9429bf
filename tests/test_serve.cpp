// softreg serve: the run-folder rules (which paths a request may reach), and every endpoint of the
// JSON API over real run folders trained by the CLI, with each bad request the server must refuse.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include <stb_image_write.h>

#include "softreg/atomic_file.hpp"
#include "softreg/inference.hpp"
#include "softreg/io.hpp"
#include "softreg/model_io.hpp"
#include "softreg/plot.hpp"
#include "softreg/serve.hpp"
#include "test_util.hpp"

// After Eigen (through the softreg headers): httplib brings <resolv.h>, whose _res macro breaks Eigen.
#include <httplib.h>

namespace softreg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using serve::RunState;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// ---- Run folders --------------------------------------------------------------------------------

TEST(RunFolders, ListsRunFoldersOnly) {
  test::TempDir root;
  for (const char* name : {"b-run", "a-run", ".hidden", "empty", "model-only"})
    fs::create_directories(root / name);
  write_text(root / "b-run" / "metrics.csv", "epoch\n1\n");
  write_text(root / "a-run" / "summary.json", "{}");
  write_text(root / ".hidden" / "metrics.csv", "epoch\n1\n");
  write_text(root / "model-only" / "model.safetensors", "x");
  write_text(root / "stray.csv", "epoch\n");
  fs::create_directory_symlink(root / "b-run", root / "latest");  // the alias train makes: not listed twice
  EXPECT_EQ(serve::list_runs(root.path()), (std::vector<std::string>{"a-run", "b-run", "model-only"}));
  EXPECT_TRUE(serve::list_runs(root / "missing").empty());
}

TEST(RunFolders, ResolvesOnlyFoldersDirectlyUnderTheRoot) {
  test::TempDir root, outside;
  fs::create_directories(root / "run" / "sub");
  fs::create_directory_symlink(root / "run", root / "latest");
  fs::create_directory_symlink(outside.path(), root / "escape");
  const fs::path run = fs::canonical(root / "run");
  EXPECT_EQ(serve::resolve_run(root.path(), "run"), run);
  EXPECT_EQ(serve::resolve_run(root.path(), "latest"), run)
      << "a symlink to a run inside the root is followed";
  for (const char* id :
       {"escape", "..", ".", "", "run/sub", "run/..", "../run", ".hidden", "missing", "a\\b"})
    EXPECT_FALSE(serve::resolve_run(root.path(), id)) << id;
  EXPECT_FALSE(serve::resolve_run(root.path(), std::string_view("run\0x", 5)));
  // A root named like a prefix of another folder does not contain it.
  fs::create_directories(root / "r");
  fs::create_directories(root / "r-other" / "x");
  fs::create_directory_symlink(root / "r-other" / "x", root / "r" / "x");
  EXPECT_FALSE(serve::resolve_run(root / "r", "x"));
}

TEST(RunFolders, ResolvesOnlyPlainFilesDirectlyInARun) {
  test::TempDir root, outside;
  const fs::path run = root / "run";
  fs::create_directories(run / "sub");
  write_text(run / "metrics.csv", "epoch\n");
  write_text(run / ".softreg.lock", "");
  write_text(run / "sub" / "x.png", "");
  write_text(outside / "secret.txt", "secret");
  fs::create_symlink(outside / "secret.txt", run / "leak.txt");
  fs::create_symlink(run / "metrics.csv", run / "alias.csv");
  const fs::path canonical = fs::canonical(run);
  EXPECT_EQ(serve::resolve_run_file(canonical, "metrics.csv"), canonical / "metrics.csv");
  EXPECT_EQ(serve::resolve_run_file(canonical, "alias.csv"), canonical / "metrics.csv");
  for (const char* name : {"leak.txt", ".softreg.lock", "sub", "sub/x.png", "../run/metrics.csv", "..",
                           "/etc/passwd", "missing.png", ""})
    EXPECT_FALSE(serve::resolve_run_file(canonical, name)) << name;
}

TEST(RunFolders, CsvRowsAsJson) {
  const json rows =
      json::parse(serve::csv_rows_json("epoch,train_loss,note\n1,0.5,a\r\n2,0.25,b\nbad,row\n\n"));
  ASSERT_EQ(rows.size(), 2u) << "a row without the header's cell count is left out";
  EXPECT_EQ(rows[0]["epoch"], 1);
  EXPECT_TRUE(rows[0]["epoch"].is_number_integer());
  EXPECT_DOUBLE_EQ(rows[1]["train_loss"].get<double>(), 0.25);
  EXPECT_EQ(rows[1]["note"], "b");
  EXPECT_EQ(serve::csv_rows_json(""), "[]");
  // Found by fuzz_serve_paths: a cell of invalid UTF-8 made nlohmann::json throw while writing the JSON.
  const json odd = json::parse(serve::csv_rows_json("epoch,note\n1,metrics.\xff\xff\xff\n"));
  ASSERT_EQ(odd.size(), 1u);
  EXPECT_EQ(odd[0]["note"], "metrics.\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd") << "each bad byte becomes U+FFFD";
  EXPECT_EQ(serve::csv_rows_json("epoch,x\n"), "[]");
  // Also found by fuzzing: an epoch of 1e308 was cast to an integer (undefined behaviour).
  const json huge = json::parse(serve::csv_rows_json("epoch\n1e308\n2.5\n-3\n"));
  EXPECT_TRUE(huge[0]["epoch"].is_number_float());
  EXPECT_TRUE(huge[1]["epoch"].is_number_float());
  EXPECT_EQ(huge[2]["epoch"], -3);
}

TEST(RunFolders, StateFromTheLockAndTheSummary) {
  test::TempDir root;
  const fs::path run = root / "run";
  fs::create_directories(run);
  write_text(run / "metrics.csv", "epoch,train_loss\n1,0.5\n2,0.4\n");
  EXPECT_EQ(serve::run_state(run), RunState::kStopped);
  {
    FolderLock lock(run / ".softreg.lock", FolderLock::IfBusy::kFail);
    EXPECT_TRUE(FolderLock::is_held(run / ".softreg.lock"));
    EXPECT_EQ(serve::run_state(run), RunState::kTraining);
    // Asking does not take the lock: a second holder still fails only because of the first.
    EXPECT_THROW(FolderLock(run / ".softreg.lock", FolderLock::IfBusy::kFail), Error);
  }
  EXPECT_FALSE(FolderLock::is_held(run / ".softreg.lock"));
  EXPECT_FALSE(FolderLock::is_held(run / "no-such.lock"));
  // A summary counts when it covers every epoch of metrics.csv (a resumed run trains beneath an old one).
  write_text(run / "summary.json", R"({"per_epoch": [{}]})");
  EXPECT_EQ(serve::run_state(run), RunState::kStopped);
  write_text(run / "summary.json", R"({"per_epoch": [{}, {}]})");
  EXPECT_EQ(serve::run_state(run), RunState::kFinished);
  write_text(run / "summary.json", "{not json");
  EXPECT_EQ(serve::run_state(run), RunState::kStopped);
}

// ---- The server over real runs ------------------------------------------------------------------

void write_idx_folder(const fs::path& folder, const Dataset& train, const Dataset& test) {
  fs::create_directories(folder);
  const auto write = [&](const Dataset& d, const std::string& prefix) {
    const auto h = static_cast<std::uint32_t>(d.height), w = static_cast<std::uint32_t>(d.width);
    const std::vector<std::uint8_t> pixels(d.pixels.data(), d.pixels.data() + d.pixels.size());
    test::write_bytes(folder / (prefix + "-images-idx3-ubyte"),
                      test::idx_bytes(0x803, {static_cast<std::uint32_t>(d.count), h, w}, pixels));
    std::vector<std::uint8_t> labels(d.labels.begin(), d.labels.end());
    test::write_bytes(folder / (prefix + "-labels-idx1-ubyte"),
                      test::idx_bytes(0x801, {static_cast<std::uint32_t>(d.count)}, labels));
  };
  write(train, "train");
  write(test, "t10k");
}

int run_cli(const std::vector<std::string>& args) {
  return test::run_program(SOFTREG_CLI_PATH, args);
}

// The raw bytes of one HTTP exchange, for requests a client library would tidy up first.
std::string raw_exchange(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return "";
  }
  for (std::size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  // The server closes after its answer (Connection: close, or a request it cannot parse); a server
  // that hung would leave this waiting, so the wait is bounded.
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;)
    answer.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);
  return answer;
}

int status_of(const std::string& raw) {
  return raw.size() > 12 ? std::atoi(raw.substr(9, 3).c_str()) : 0;
}

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const Dataset train = test::banded_dataset(600, 12, 4, 30, 4, 250, 1);
    const Dataset test_set = test::banded_dataset(120, 12, 4, 30, 4, 250, 2);
    write_idx_folder(*dir_ / "data", train, test_set);
    fs::create_directories(*dir_ / "runs");
    const std::string data = (*dir_ / "data").string();
    ASSERT_EQ(run_cli({"train", "--data", data, "--epochs", "3", "--out", (*dir_ / "runs" / "alpha").string(),
                       "--quiet", "--no-check"}),
              0);
    ASSERT_EQ(run_cli({"train", "--data", data, "--epochs", "2", "--lr", "0.05", "--out",
                       (*dir_ / "runs" / "beta").string(), "--quiet", "--no-check", "--no-plots"}),
              0);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    dashboard_ = std::make_unique<serve::Dashboard>(
        serve::ServerOptions{.runs = *dir_ / "runs",
                             .port = 0,
                             .poll_interval = std::chrono::milliseconds(20),
                             .read_timeout = std::chrono::milliseconds(500)});
    dashboard_->start();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", dashboard_->port());
    client_->set_read_timeout(10, 0);
  }
  void TearDown() override {
    client_.reset();
    dashboard_.reset();
  }

  json get_json(const std::string& path, int expected_status = 200) {
    const httplib::Result result = client_->Get(path.c_str());
    EXPECT_TRUE(result) << path;
    if (!result) return nullptr;
    EXPECT_EQ(result->status, expected_status) << path << ": " << result->body;
    EXPECT_EQ(result->get_header_value("Content-Type"), "application/json") << path;
    return json::parse(result->body);
  }

  // 404 with a JSON error for a raw request line.
  void expect_not_found(const std::string& target) {
    const std::string raw = raw_exchange(
        dashboard_->port(), "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(status_of(raw), 404) << target << "\n" << raw.substr(0, 300);
    EXPECT_NE(raw.find("{\"error\":"), std::string::npos) << target;
    EXPECT_EQ(raw.find("secret"), std::string::npos) << target;
  }

  std::string test_image_png(std::size_t index) {
    const httplib::Result result =
        client_->Get(("/api/runs/alpha/test-images/" + std::to_string(index) + ".png").c_str());
    EXPECT_TRUE(result && result->status == 200);
    return result ? result->body : "";
  }

  static test::TempDir* dir_;
  std::unique_ptr<serve::Dashboard> dashboard_;
  std::unique_ptr<httplib::Client> client_;
};
test::TempDir* Serve::dir_ = nullptr;

TEST_F(Serve, ThePageAndItsScriptsAreEmbedded) {
  const httplib::Result page = client_->Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("/static/chart.js"), std::string::npos);
  const httplib::Result chart = client_->Get("/static/chart.js");
  ASSERT_TRUE(chart);
  EXPECT_EQ(chart->status, 200);
  EXPECT_NE(chart->body.find("Chart.js v"), std::string::npos) << "the chart library itself, not a stub";
  EXPECT_GT(chart->body.size(), 100'000u);
  for (const char* asset : {"/static/app.js", "/static/style.css"}) {
    const httplib::Result r = client_->Get(asset);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << asset;
    EXPECT_FALSE(r->body.empty()) << asset;
  }
  EXPECT_EQ(client_->Get("/static/missing.js")->status, 404);
}

TEST_F(Serve, ListsRunsWithTheirRecipeAndMetrics) {
  const json answer = get_json("/api/runs");
  ASSERT_EQ(answer["runs"].size(), 2u);
  const json& alpha = answer["runs"][0];
  EXPECT_EQ(alpha["id"], "alpha");
  EXPECT_EQ(alpha["state"], "finished");
  EXPECT_EQ(alpha["epochs_done"], 3);
  EXPECT_EQ(alpha["recipe"]["epochs"], 3);
  EXPECT_DOUBLE_EQ(alpha["recipe"]["lr"].get<double>(), 0.1);
  EXPECT_EQ(alpha["recipe"]["batch_size"], 256);
  EXPECT_EQ(alpha["input"]["kind"], "images");
  EXPECT_EQ(alpha["input"]["height"], 12);
  EXPECT_EQ(alpha["classes"].size(), 4u);
  EXPECT_GT(alpha["seconds"].get<double>(), 0);
  EXPECT_TRUE(alpha["date"].get<std::string>().ends_with("Z"));
  const std::vector<EpochMetrics> epochs = read_metrics_csv(*dir_ / "runs" / "alpha" / "metrics.csv");
  EXPECT_DOUBLE_EQ(alpha["last"]["test_acc"].get<double>(), epochs.back().test_acc);
  const auto files = alpha["files"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(files.begin(), files.end(), "weights.png"), files.end());
  EXPECT_EQ(std::find(files.begin(), files.end(), ".softreg.lock"), files.end());
  EXPECT_EQ(answer["runs"][1]["id"], "beta");
  EXPECT_DOUBLE_EQ(answer["runs"][1]["recipe"]["lr"].get<double>(), 0.05);
  EXPECT_EQ(get_json("/api/runs/beta")["epochs_done"], 2);
}

TEST_F(Serve, MetricsAndFilesAreTheRunFolders) {
  const json rows = get_json("/api/runs/alpha/metrics");
  const std::vector<EpochMetrics> epochs = read_metrics_csv(*dir_ / "runs" / "alpha" / "metrics.csv");
  ASSERT_EQ(rows.size(), epochs.size());
  for (std::size_t i = 0; i < epochs.size(); ++i) {
    EXPECT_EQ(rows[i]["epoch"], epochs[i].epoch);
    EXPECT_DOUBLE_EQ(rows[i]["train_loss"].get<double>(), epochs[i].train_loss);
  }
  std::ifstream in(*dir_ / "runs" / "alpha" / "weights.png", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const httplib::Result png = client_->Get("/api/runs/alpha/files/weights.png");
  ASSERT_TRUE(png);
  EXPECT_EQ(png->status, 200);
  EXPECT_EQ(png->get_header_value("Content-Type"), "image/png");
  EXPECT_EQ(png->body, bytes);
  const httplib::Result csv = client_->Get("/api/runs/alpha/files/metrics.csv");
  ASSERT_TRUE(csv);
  EXPECT_EQ(csv->get_header_value("Content-Type"), "text/csv; charset=utf-8");
  EXPECT_EQ(client_->Get("/api/runs/alpha/files/curves.svg")
                ->get_header_value("Content-Security-Policy")
                .rfind("default-src 'none'", 0),
            0u);
}

TEST_F(Serve, EventsReplayTheEpochsOfAFinishedRunThenEnd) {
  const httplib::Result all = client_->Get("/api/runs/alpha/events");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->get_header_value("Content-Type"), "text/event-stream");
  EXPECT_NE(all->body.find("id: 1\nevent: epoch\ndata: {"), std::string::npos) << all->body;
  EXPECT_NE(all->body.find("id: 3\nevent: epoch"), std::string::npos);
  EXPECT_NE(all->body.find("event: end\ndata: {\"state\":\"finished\"}"), std::string::npos);
  const httplib::Result after = client_->Get("/api/runs/alpha/events?after=2");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body.find("id: 2\n"), std::string::npos);
  EXPECT_NE(after->body.find("id: 3\n"), std::string::npos);
  // A reconnecting EventSource sends the last id it saw.
  const httplib::Result resumed = client_->Get("/api/runs/alpha/events", {{"Last-Event-ID", "3"}});
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed->body.find("event: epoch"), std::string::npos);
  EXPECT_NE(resumed->body.find("event: end"), std::string::npos);
  EXPECT_EQ(client_->Get("/api/runs/alpha/events?after=-1")->status, 400);
}

TEST_F(Serve, EventsFollowARunInTraining) {
  // A run folder as softreg train keeps it: locked, metrics.csv rewritten after every epoch.
  const fs::path run = *dir_ / "runs" / "live";
  fs::create_directories(run);
  auto lock = std::make_unique<FolderLock>(run / ".softreg.lock", FolderLock::IfBusy::kFail);
  const std::string header = "epoch,train_loss,train_acc,test_acc,test_loss,seconds\n";
  std::string csv = header + "1,0.9,0.6,0.6,0.9,0.01\n";
  write_file_atomic(run / "metrics.csv", csv);
  EXPECT_EQ(get_json("/api/runs/live")["state"], "training");

  std::string received;
  std::mutex mutex;
  std::thread reader([&] {
    httplib::Client client("127.0.0.1", dashboard_->port());
    client.set_read_timeout(20, 0);
    client.Get("/api/runs/live/events", [&](const char* data, std::size_t length) {
      std::lock_guard guard(mutex);
      received.append(data, length);
      return true;
    });
  });
  const auto wait_for = [&](const std::string& text) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard guard(mutex);
        if (received.find(text) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  EXPECT_TRUE(wait_for("id: 1\n"));
  for (int epoch = 2; epoch <= 4; ++epoch) {
    csv += std::to_string(epoch) + ",0.5,0.8,0.8,0.5,0.01\n";
    write_file_atomic(run / "metrics.csv", csv);
    EXPECT_TRUE(wait_for("id: " + std::to_string(epoch) + "\n"))
        << "epoch " << epoch << " arrives while training";
  }
  {
    std::lock_guard guard(mutex);
    EXPECT_EQ(received.find("event: end"), std::string::npos) << "the stream stays open while the run trains";
  }
  write_file_atomic(run / "summary.json", R"({"per_epoch": [{}, {}, {}, {}]})");
  lock.reset();
  EXPECT_TRUE(wait_for("event: end\ndata: {\"state\":\"finished\"}"));
  reader.join();
  std::lock_guard guard(mutex);
  EXPECT_EQ(received.find("id: 1\n"), received.rfind("id: 1\n")) << "each epoch once";
  fs::remove_all(run);
}

TEST_F(Serve, StoppingEndsOpenEventStreams) {
  const fs::path run = *dir_ / "runs" / "held";
  fs::create_directories(run);
  FolderLock lock(run / ".softreg.lock", FolderLock::IfBusy::kFail);
  write_file_atomic(run / "metrics.csv", "epoch,train_loss\n1,0.5\n");
  std::atomic<bool> done{false};
  std::thread reader([&] {
    httplib::Client client("127.0.0.1", dashboard_->port());
    client.Get("/api/runs/held/events", [&](const char*, std::size_t) { return true; });
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(done.load());
  const auto start = std::chrono::steady_clock::now();
  dashboard_->stop();
  reader.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  fs::remove_all(run);
}

TEST_F(Serve, OddRunFoldersDoNotBreakTheListing) {
  // Run folders edited by hand: cells of the wrong type, a summary of the wrong shape, a broken model.
  const fs::path odd = *dir_ / "runs" / "odd";
  fs::create_directories(odd);
  write_text(odd / "metrics.csv", "epoch,seconds,train_loss\nfirst,x,0.5\n2,\xff,0.4\n");
  write_text(odd / "summary.json",
             R"({"recipe": 3, "data": 5, "seconds_total": "long", "per_epoch": 7, "note": ["not", "text"]})");
  write_text(odd / "model.safetensors", "not a model");
  const json runs = get_json("/api/runs");
  ASSERT_EQ(runs["runs"].size(), 3u);
  const json& summary = runs["runs"][2];
  EXPECT_EQ(summary["id"], "odd");
  EXPECT_EQ(summary["state"], "stopped");
  EXPECT_EQ(summary["epochs_done"], 2);
  EXPECT_NE(summary["model_error"].get<std::string>().find("model.safetensors"), std::string::npos);
  EXPECT_FALSE(summary.contains("note"));  // not a string
  write_text(odd / "summary.json", R"({"note": "test accuracy 0.5000 is no better than always answering"})");
  EXPECT_EQ(get_json("/api/runs/odd")["note"], "test accuracy 0.5000 is no better than always answering");
  const httplib::Result events = client_->Get("/api/runs/odd/events");
  ASSERT_TRUE(events);
  EXPECT_EQ(events->body.find("id: 1\n"), std::string::npos) << "no epoch number, no event";
  EXPECT_NE(events->body.find("id: 2\n"), std::string::npos);
  EXPECT_NE(events->body.find("event: end"), std::string::npos);
  EXPECT_EQ(client_->Post("/api/runs/odd/predict", std::string("x"), "image/png")->status, 500);
  fs::remove_all(odd);
}

TEST_F(Serve, PredictsAnUploadedTestImageAsTheModelDoes) {
  const json confusion = get_json("/api/runs/alpha/confusion");
  ASSERT_EQ(confusion["matrix"].size(), 4u);
  EXPECT_EQ(confusion["count"], 120);
  std::int64_t total = 0;
  for (const json& row : confusion["matrix"])
    for (const json& n : row)
      total += n.get<std::int64_t>();
  EXPECT_EQ(total, 120);
  // The images of a cell are test images the model puts there; uploaded back, each gets that class.
  int checked = 0;
  for (int t = 0; t < 4; ++t) {
    for (int p = 0; p < 4; ++p) {
      const json cell = get_json(fmt::format("/api/runs/alpha/confusion/{}/{}", t, p));
      EXPECT_EQ(cell["count"], confusion["matrix"][t][p]);
      for (const json& index : cell["indices"]) {
        if (checked >= 12) break;
        const std::string png = test_image_png(index.get<std::size_t>());
        const httplib::Result answer = client_->Post("/api/runs/alpha/predict?k=4", png, "image/png");
        ASSERT_TRUE(answer);
        ASSERT_EQ(answer->status, 200) << answer->body;
        const json top = json::parse(answer->body)["top"];
        ASSERT_EQ(top.size(), 4u);
        EXPECT_EQ(top[0]["class"], p) << "test image " << index;
        EXPECT_EQ(top[0]["name"], confusion["classes"][p]);
        EXPECT_GE(top[0]["prob"].get<double>(), top[1]["prob"].get<double>());
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 12);
  // Default k: every class up to ten; probabilities sum to one.
  const json answer =
      json::parse(client_->Post("/api/runs/alpha/predict", test_image_png(0), "image/png")->body);
  EXPECT_EQ(answer["top"].size(), 4u);
  double sum = 0;
  for (const json& p : answer["probabilities"])
    sum += p.get<double>();
  EXPECT_NEAR(sum, 1.0, 1e-9);
}

// An RGBA PNG of one colour and alpha, made in memory by stb_image_write.
std::string rgba_png(int side, std::uint8_t grey, std::uint8_t alpha) {
  std::vector<std::uint8_t> pixels;
  for (int i = 0; i < side * side; ++i)
    pixels.insert(pixels.end(), {grey, grey, grey, alpha});
  std::string png;
  stbi_write_png_to_func(
      [](void* context, void* data, int size) {
        static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                                   static_cast<std::size_t>(size));
      },
      &png, side, side, 4, pixels.data(), side * 4);
  return png;
}

TEST_F(Serve, TransparentUploadsAreCompositedOntoTheBackground) {
  const auto probabilities = [&](const std::string& png, const char* query) {
    const httplib::Result r =
        client_->Post((std::string("/api/runs/alpha/predict") + query).c_str(), png, "image/png");
    EXPECT_TRUE(r && r->status == 200);
    return r ? json::parse(r->body)["probabilities"] : json(nullptr);
  };
  const json black = probabilities(plot::gray_image_png(std::vector<std::uint8_t>(144, 0), 12, 12), "");
  const json white = probabilities(plot::gray_image_png(std::vector<std::uint8_t>(144, 255), 12, 12), "");
  ASSERT_NE(black, white) << "the model must tell the two apart for this test to mean anything";
  // Transparent white is the black background, not white; transparent black with invert=1 goes onto
  // white, which inverts to black: the alpha channel is not dropped.
  EXPECT_EQ(probabilities(rgba_png(12, 255, 0), ""), black);
  EXPECT_EQ(probabilities(rgba_png(12, 0, 0), "?invert=1"), black);
  EXPECT_EQ(probabilities(rgba_png(12, 255, 255), ""), white);
}

TEST_F(Serve, PredictOnAFileCompositesTransparencyToo) {
  // softreg predict's path (a file): transparent black with --invert is the black background.
  const ModelFile model = load_model(*dir_ / "runs" / "alpha" / "model.safetensors");
  test::TempDir files;
  write_text(files / "clear.png", rgba_png(12, 0, 0));
  write_text(files / "black.png", plot::gray_image_png(std::vector<std::uint8_t>(144, 0), 12, 12));
  write_text(files / "white.png", plot::gray_image_png(std::vector<std::uint8_t>(144, 255), 12, 12));
  const auto black = predict_image_file(model, files / "black.png", false).probabilities;
  ASSERT_NE(black, predict_image_file(model, files / "white.png", false).probabilities);
  EXPECT_EQ(predict_image_file(model, files / "clear.png", true).probabilities, black);
  EXPECT_EQ(predict_image_file(model, files / "clear.png", false).probabilities, black);
}

TEST_F(Serve, RefusesPathsOutsideTheRuns) {
  test::TempDir outside;
  write_text(outside / "secret.txt", "secret");
  const fs::path runs = *dir_ / "runs";
  std::error_code ec;
  fs::remove(runs / "out", ec);
  fs::remove(runs / "alpha" / "leak.txt", ec);
  fs::create_directory_symlink(outside.path(), runs / "out");
  fs::create_symlink(outside / "secret.txt", runs / "alpha" / "leak.txt");
  for (const char* target : {
           "/api/runs/../../etc/passwd",
           "/api/runs/alpha/files/../../../../etc/passwd",
           "/api/runs/alpha/files/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
           "/api/runs/alpha/files/%2e%2e%2fsummary.json",
           "/api/runs/%2e%2e/files/passwd",
           "/api/runs/..%2F..%2Fetc/files/passwd",
           "/api/runs/alpha/files/%2Fetc%2Fpasswd",
           "/api/runs/alpha/files//etc/passwd",
           "/api/runs/alpha/files/.softreg.lock",
           "/api/runs/alpha/files/leak.txt",
           "/api/runs/out/files/secret.txt",
           "/api/runs/out",
           "/api/runs/nosuch",
           "/api/runs/nosuch/metrics",
           "/api/runs/alpha/files/",
           "/api/runs/alpha/files/nosuch.png",
           "/api/runs/alpha/confusion/9/0",
           "/api/runs/alpha/test-images/120.png",
           "/api/runs/alpha/test-images/99999999999999999999999.png",
           "/api/nothing",
           "/etc/passwd",
       }) {
    expect_not_found(target);
  }
  fs::remove(runs / "out");
  fs::remove(runs / "alpha" / "leak.txt");
}

TEST_F(Serve, RefusesBadUploads) {
  // Over 8 MB: 413, whatever the body is.
  const httplib::Result big =
      client_->Post("/api/runs/alpha/predict", std::string((8u << 20) + 1, 'x'), "image/png");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_NE(big->body.find("over the 8388608-byte limit"), std::string::npos) << big->body;
  // Undecodable, truncated, empty, too large in pixels: 400 with the decoder's reason.
  const std::string png = test_image_png(0);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"hello, not an image", "cannot read as an image"},
      {png.substr(0, png.size() / 2), "the uploaded image"},
      {"", "must be an image file"},
      {plot::gray_image_png(std::vector<std::uint8_t>(4097, 0), 4097, 1), "each side may be at most 4096"},
      {plot::gray_image_png(std::vector<std::uint8_t>(4097, 0), 1, 4097), "each side may be at most 4096"},
  };
  for (const auto& [body, reason] : bad) {
    const httplib::Result r = client_->Post("/api/runs/alpha/predict", body, "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << reason;
    EXPECT_NE(r->body.find(reason), std::string::npos) << r->body;
  }
  EXPECT_EQ(client_
                ->Post("/api/runs/alpha/predict",
                       plot::gray_image_png(std::vector<std::uint8_t>(4096, 7), 4096, 1), "image/png")
                ->status,
            200)
      << "4096 pixels a side is allowed";
  for (const char* query : {"?k=0", "?k=5", "?k=two", "?invert=2"}) {
    const httplib::Result r =
        client_->Post((std::string("/api/runs/alpha/predict") + query).c_str(), png, "image/png");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << query;
  }
  EXPECT_EQ(client_->Post("/api/runs/nosuch/predict", png, "image/png")->status, 404);
}

// Stopped at once after starting, before its thread has begun listening: cpp-httplib 0.11's stop()
// does nothing until then, and joining the thread would wait for ever (a `softreg serve` given Ctrl-C
// right after it printed its address, on a busy machine). Each stop must return, and promptly.
TEST_F(Serve, StopsRightAfterStarting) {
  const auto begin = std::chrono::steady_clock::now();
  for (int round = 0; round < 200; ++round) {
    serve::Dashboard dashboard(serve::ServerOptions{.runs = *dir_ / "runs", .port = 0});
    dashboard.start();
    dashboard.stop();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(20));
}

TEST_F(Serve, SurvivesMalformedAndStalledRequests) {
  const int port = dashboard_->port();
  // A client that connects and says nothing holds one connection, not the server.
  const int idle = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(idle, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  const std::string close = "Connection: close\r\n";
  for (const std::string& request : {
           std::string("HELLO\r\n\r\n"),
           std::string("GET\r\n\r\n"),
           "POST /api/runs/alpha/predict HTTP/1.1\r\nHost: x\r\n" + close +
               "Content-Length: 99999999999999999999\r\n\r\n",
           "POST /api/runs/alpha/predict HTTP/1.1\r\nHost: x\r\n" + close +
               "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
           "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n" + close + "\r\n",
           "GET /api/runs HTTP/1.1\r\n" + close + std::string(9000, 'h') + ": v\r\n\r\n",
           std::string("\0\0\0\0\r\n\r\n", 8),
       }) {
    const std::string raw = raw_exchange(port, request);
    const int status = status_of(raw);
    EXPECT_TRUE(raw.empty() || (status >= 400 && status < 500))
        << request.substr(0, 60) << " -> " << raw.substr(0, 80);
  }
  // A GET with a nonsensical body length is answered as a GET (its body is not read).
  const std::string odd =
      raw_exchange(port, "GET /api/runs HTTP/1.1\r\nHost: x\r\n" + close + "Content-Length: -5\r\n\r\n");
  EXPECT_TRUE(odd.empty() || status_of(odd) < 500) << odd.substr(0, 80);
  // Still answering, with the idle connection open.
  EXPECT_EQ(get_json("/api/runs")["runs"].size(), 2u);
  ::close(idle);
}

}  // namespace
}  // namespace softreg
