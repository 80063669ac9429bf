// Downloads against a loopback HTTP server inside the test (cpp-httplib): good files, a wrong checksum,
// a 404, a dropped connection resumed with Range, a stall, a redirect, Ctrl-C, two processes at once.
// The server serves the tiny IDX set of tests/fixtures/download (tools/make_download_fixtures.py) under
// the checksums pinned below, and Debian's Fashion-MNIST for the CLI, which knows that set by name.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "softreg/dataset.hpp"
#include "softreg/download.hpp"
#include "softreg/error.hpp"
#include "test_util.hpp"
// After Eigen (through the headers above): httplib brings <resolv.h>, whose _res macro breaks Eigen's
// parameters of that name.
#include <httplib.h>

namespace softreg {
namespace {
namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(SOFTREG_FIXTURES_DIR) / "download";
const fs::path kFashion = "/usr/share/datasets/fashion-mnist";

// The fixture set as a known data set, with the checksums tools/make_download_fixtures.py printed.
KnownDataset fixture_dataset(const std::string& mirror) {
  return {
      "tiny",
      "tiny fixture",
      {mirror},
      {{{"train-images-idx3-ubyte.gz", 335,
         "b670aa5c2eef41d91a2249fae7bc1518f1260e7365bcb90c7d799a0b2a7da3e5", 400,
         "69e601a24da34620bdc04cf72cdde4bbfc534b83942d09b6d0188e66d448b7e4"},
        {"train-labels-idx1-ubyte.gz", 31, "dc7f84e14a55bec7a311080864cdcedca8175fc9485d0ad5d70f49114cff954d",
         32, "6e7676bc140045e3f1211a79feed7a3248bbee73df1665b18194f4557d01895c"},
        {"t10k-images-idx3-ubyte.gz", 130, "b385063c546476dbdca1af3d9cac00eaef5837a51675dbf9210ea708fc3516b4",
         144, "cd19d6ba2e319ae24b7fe5e45b7fdcc91153964201136a08d038a16ceafe35c0"},
        {"t10k-labels-idx1-ubyte.gz", 29, "33207b1ba852c452a54e7b39f6eadb9fe33712043b224297231b0dc1ddf037ec",
         16, "56667838b39a5ed229699d6c131e667b955adf9b0be6e6492079f8aae986b9e9"}}},
      {"left", "right"},
      std::nullopt};
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Files in `folder` other than the lock file.
std::vector<std::string> listing(const fs::path& folder) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (entry.path().filename() != ".download.lock") names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// GET /<source>/<mode>/<file>: source "fixture" or "fashion"; mode good, corrupt, missing, redirect,
// drop (the first request for a file breaks off halfway), stall (headers, then nothing), slow
// (1 KB every 10 ms), late (good, after a pause).
class LoopbackServer {
 public:
  LoopbackServer() {
    server_.Get(R"(/(fixture|fashion)/(\w+)/([\w.-]+))",
                [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running())
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~LoopbackServer() {
    stopping_ = true;
    server_.stop();
    thread_.join();
  }
  std::string url(const std::string& source, const std::string& mode) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + source + "/" + mode + "/";
  }
  // The Range headers of the requests so far for `file` ("" for none).
  std::vector<std::string> ranges(const std::string& file) {
    std::lock_guard lock(mutex_);
    return ranges_[file];
  }

 private:
  void handle(const httplib::Request& req, httplib::Response& res) {
    const std::string source = req.matches[1], mode = req.matches[2], file = req.matches[3];
    bool first = false;
    {
      std::lock_guard lock(mutex_);
      first = ranges_[mode + "/" + file].empty();
      ranges_[mode + "/" + file].push_back(req.get_header_value("Range"));
    }
    const fs::path path = (source == "fixture" ? kFixtures : kFashion) / file;
    if (mode == "missing" || !fs::exists(path)) {
      res.status = 404;
      res.set_content("not here", "text/plain");
      return;
    }
    if (mode == "redirect") {
      res.set_redirect(url(source, "good") + file);
      return;
    }
    auto body = std::make_shared<std::string>(read_all(path));
    if (mode == "corrupt") (*body)[body->size() / 2] ^= 0x5a;
    if (mode == "late") std::this_thread::sleep_for(std::chrono::milliseconds(400));
    if (mode == "good" || mode == "corrupt" || mode == "late" || (mode == "drop" && !first)) {
      res.set_content(*body, "application/octet-stream");  // httplib answers Range requests with 206
      return;
    }
    if (mode == "drop") {
      res.set_content_provider(body->size(), "application/octet-stream",
                               [body](std::size_t offset, std::size_t, httplib::DataSink& sink) {
                                 const std::size_t half = body->size() / 2;
                                 if (offset < half) sink.write(body->data() + offset, half - offset);
                                 return false;  // breaks the connection off halfway
                               });
      return;
    }
    if (mode == "stall") {
      res.set_content_provider(body->size(), "application/octet-stream",
                               [this](std::size_t, std::size_t, httplib::DataSink&) {
                                 for (int i = 0; i < 200 && !stopping_; ++i)
                                   std::this_thread::sleep_for(std::chrono::milliseconds(25));
                                 return false;
                               });
      return;
    }
    if (mode == "slow") {
      res.set_content_provider(body->size(), "application/octet-stream",
                               [this, body](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                                 if (stopping_) return false;
                                 std::this_thread::sleep_for(std::chrono::milliseconds(10));
                                 return sink.write(body->data() + offset,
                                                   std::min<std::size_t>(1024, length));
                               });
      return;
    }
    res.status = 400;
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::map<std::string, std::vector<std::string>> ranges_;
};

// A stall timeout long enough that a loaded machine (CI runs these under ASan beside other tests) never
// trips it before the loopback server's first byte: with 1 s, a slow first answer of the "drop" mirror
// timed out with nothing received, and its retry carried no Range header. The stall test sets its own.
DownloadOptions quick_options() {
  DownloadOptions options;
  options.connect_timeout_seconds = 2;
  options.stall_timeout_seconds = 10;
  options.retries = 1;
  options.backoff_seconds = 0.05;
  return options;
}

class Download : public ::testing::Test {
 protected:
  test::TempDir dir_;
  const fs::path folder_ = dir_ / "set";
  LoopbackServer server_;
};

TEST_F(Download, GoodFilesAreVerifiedAndLoadable) {
  const KnownDataset set = fixture_dataset(server_.url("fixture", "good"));
  const DownloadReport report = download_dataset(set, folder_, quick_options());
  ASSERT_EQ(report.files.size(), 4u);
  for (const DownloadedFile& f : report.files) {
    EXPECT_EQ(f.verified, Verified::kPublished) << f.name;
    EXPECT_EQ(f.url, server_.url("fixture", "good") + f.name);
  }
  EXPECT_EQ(listing(folder_),
            (std::vector<std::string>{"classes.txt", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                                      "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}));
  EXPECT_EQ(read_all(folder_ / "classes.txt"), "left\nright\n");
  const TrainTestData data = load_train_test(*find_data_files(folder_), 2);
  EXPECT_EQ(data.train.count, 24u);
  EXPECT_EQ(data.test.count, 8u);
  // A second call finds them verified and fetches nothing.
  const DownloadReport again = download_dataset(set, folder_, quick_options());
  for (const DownloadedFile& f : again.files)
    EXPECT_TRUE(f.url.empty()) << f.name;
}

TEST_F(Download, WrongChecksumIsDeletedAndTheNextMirrorServes) {
  KnownDataset set = fixture_dataset(server_.url("fixture", "corrupt"));
  set.mirrors.push_back(server_.url("fixture", "good"));
  std::vector<std::string> notices;
  DownloadOptions options = quick_options();
  options.on_notice = [&](const std::string& n) { notices.push_back(n); };
  const DownloadReport report = download_dataset(set, folder_, options);
  for (const DownloadedFile& f : report.files)
    EXPECT_EQ(f.url, server_.url("fixture", "good") + f.name);
  ASSERT_FALSE(notices.empty());
  EXPECT_NE(notices[0].find("checksum mismatch"), std::string::npos) << notices[0];
  EXPECT_NE(notices[0].find("/fixture/corrupt/train-images-idx3-ubyte.gz"), std::string::npos) << notices[0];
  EXPECT_NE(notices[0].find("b670aa5c2eef41d9"), std::string::npos) << "names the expected checksum";
}

TEST_F(Download, EveryMirrorWrongIsAnErrorNamingFileMirrorsAndChecksums) {
  const KnownDataset set = fixture_dataset(server_.url("fixture", "corrupt"));
  try {
    download_dataset(set, folder_, quick_options());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("could not download train-images-idx3-ubyte.gz"), std::string::npos) << message;
    EXPECT_NE(message.find(server_.url("fixture", "corrupt")), std::string::npos) << message;
    EXPECT_NE(message.find("published: b670aa5c"), std::string::npos) << message;
    EXPECT_NE(message.find("expected: 69e601a2"), std::string::npos) << message;
  }
  EXPECT_TRUE(listing(folder_).empty()) << "nothing unverified is left";
}

TEST_F(Download, NotFoundOnTheFirstMirrorGoesToTheNext) {
  KnownDataset set = fixture_dataset(server_.url("fixture", "missing"));
  set.mirrors.push_back(server_.url("fixture", "good"));
  const DownloadReport report = download_dataset(set, folder_, quick_options());
  for (const DownloadedFile& f : report.files)
    EXPECT_EQ(f.url, server_.url("fixture", "good") + f.name);
  // A 404 is not retried: one request per file at the first mirror.
  EXPECT_EQ(server_.ranges("missing/train-images-idx3-ubyte.gz").size(), 1u);
}

TEST_F(Download, DroppedConnectionResumesWithRange) {
  // Debian's 26 MB training images, so that half a file is a real partial transfer.
  KnownDataset set = known_dataset("fashion-mnist");
  set.mirrors = {server_.url("fashion", "drop")};
  const DownloadReport report = download_dataset(set, folder_, quick_options());
  const std::vector<std::string> ranges = server_.ranges("drop/train-images-idx3-ubyte.gz");
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], "");
  EXPECT_EQ(ranges[1],
            "bytes=" + std::to_string(fs::file_size(kFashion / "train-images-idx3-ubyte.gz") / 2) + "-");
  EXPECT_EQ(report.files[0].verified, Verified::kContent);  // Debian's re-compressed file
  EXPECT_EQ(read_all(folder_ / "train-images-idx3-ubyte.gz"),
            read_all(kFashion / "train-images-idx3-ubyte.gz"));
}

TEST_F(Download, StallingServerTimesOutWithAClearErrorAndNoFile) {
  const KnownDataset set = fixture_dataset(server_.url("fixture", "stall"));
  DownloadOptions options = quick_options();
  options.stall_timeout_seconds = 1;
  const auto start = std::chrono::steady_clock::now();
  try {
    download_dataset(set, folder_, options);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("could not download train-images-idx3-ubyte.gz"), std::string::npos) << message;
    EXPECT_NE(message.find("timed out"), std::string::npos) << message;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  EXPECT_TRUE(listing(folder_).empty());
  EXPECT_EQ(server_.ranges("stall/train-images-idx3-ubyte.gz").size(), 2u) << "one try and one retry";
}

TEST_F(Download, RedirectIsFollowed) {
  const KnownDataset set = fixture_dataset(server_.url("fixture", "redirect"));
  download_dataset(set, folder_, quick_options());
  EXPECT_EQ(server_.ranges("good/t10k-labels-idx1-ubyte.gz").size(), 1u);
  EXPECT_EQ(read_all(folder_ / "t10k-labels-idx1-ubyte.gz"),
            read_all(kFixtures / "t10k-labels-idx1-ubyte.gz"));
}

TEST_F(Download, StopRequestLeavesNoFile) {
  KnownDataset set = known_dataset("fashion-mnist");
  set.mirrors = {server_.url("fashion", "slow")};
  DownloadOptions options = quick_options();
  std::uint64_t seen = 0;
  options.on_progress = [&](const DownloadProgress& p) { seen = p.done; };
  options.should_stop = [&] { return seen > 20'000; };
  EXPECT_THROW(download_dataset(set, folder_, options), DownloadInterrupted);
  EXPECT_GT(seen, 20'000u);
  EXPECT_TRUE(listing(folder_).empty());
}

TEST_F(Download, ABadFileAlreadyThereIsFetchedAgain) {
  fs::create_directories(folder_);
  std::ofstream(folder_ / "train-labels-idx1-ubyte.gz") << "not the file";
  const KnownDataset set = fixture_dataset(server_.url("fixture", "good"));
  const DownloadReport report = download_dataset(set, folder_, quick_options());
  EXPECT_FALSE(report.files[1].url.empty());
  EXPECT_EQ(read_all(folder_ / "train-labels-idx1-ubyte.gz"),
            read_all(kFixtures / "train-labels-idx1-ubyte.gz"));
}

TEST(DownloadChecks, ChecksumsAndContent) {
  EXPECT_EQ(sha256_hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string abc = "abc";
  EXPECT_EQ(sha256_hex({reinterpret_cast<const std::uint8_t*>(abc.data()), abc.size()}),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const KnownDataset set = fixture_dataset("");
  EXPECT_EQ(gzip_content_sha256(kFixtures / "t10k-labels-idx1-ubyte.gz", 1000), set.files[3].content_sha256);
  EXPECT_THROW(gzip_content_sha256(kFixtures / "train-images-idx3-ubyte.gz", 100), Error) << "too large";
  // Debian's Fashion-MNIST: other gzip bytes than published, the pinned content.
  const KnownDataset& fashion = known_dataset("fashion-mnist");
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(verify_published_file(fashion.files[i], kFashion / fashion.files[i].name), Verified::kContent);
  }
  EXPECT_THROW(known_dataset("cifar"), UsageError);
  EXPECT_EQ(known_dataset("kmnist").class_names[9], "wo");
  EXPECT_EQ(known_dataset("mnist").class_names[3], "3");
}

TEST(DownloadChecks, LookupOrder) {
  const test::TempDir tmp;
  const fs::path dir = tmp.path();
  const test::ScopedEnv home("HOME", (dir / "home").c_str());
  const test::ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
  const test::ScopedEnv data("SOFTREG_DATA", (dir / "shared").c_str());
  const std::vector<fs::path> folders = dataset_folders(known_dataset("fashion-mnist"));
  ASSERT_EQ(folders.size(), 3u);
  EXPECT_EQ(folders[0], dir / "home/.cache/softreg/fashion-mnist");
  EXPECT_EQ(folders[1], dir / "shared/fashion-mnist");
  EXPECT_EQ(folders[2], kFashion);
  EXPECT_EQ(default_download_folder(known_dataset("mnist")), dir / "shared/mnist");
  EXPECT_EQ(locate_dataset(known_dataset("fashion-mnist")).folder, kFashion);
  try {
    locate_dataset(known_dataset("mnist"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("softreg data download mnist"), std::string::npos) << e.what();
  }
}

// The CLI as a separate process: exit code and what is left in the folder.
int run_cli(const std::vector<std::string>& args, int interrupt_after_ms = -1) {
  return test::run_program(SOFTREG_CLI_PATH, args, interrupt_after_ms);
}

TEST_F(Download, CliInterruptedBySigintLeavesNoFile) {
  const int code = run_cli({"data", "download", "fashion-mnist", "--to", folder_.string(), "--mirror",
                            server_.url("fashion", "slow")},
                           /*interrupt_after_ms=*/700);
  EXPECT_EQ(code, 130);
  EXPECT_GE(server_.ranges("slow/train-images-idx3-ubyte.gz").size(), 1u) << "it was downloading";
  EXPECT_TRUE(listing(folder_).empty());
}

TEST_F(Download, TwoProcessesAtOnceBothSucceed) {
  std::thread other([&] {
    EXPECT_EQ(run_cli({"data", "download", "fashion-mnist", "--to", folder_.string(), "--mirror",
                       server_.url("fashion", "late")}),
              0);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(run_cli({"data", "download", "fashion-mnist", "--to", folder_.string(), "--mirror",
                     server_.url("fashion", "late")}),
            0);
  other.join();
  // Each file was fetched once: the second process waited and found it verified.
  EXPECT_EQ(server_.ranges("late/train-images-idx3-ubyte.gz").size(), 1u);
  const KnownDataset& fashion = known_dataset("fashion-mnist");
  for (const PublishedFile& f : fashion.files)
    EXPECT_EQ(verify_published_file(f, folder_ / f.name), Verified::kContent);
  EXPECT_EQ(listing(folder_).size(), 5u);
}

TEST_F(Download, CliDatasetFlagAndTrainDownload) {
  const fs::path shared = dir_ / "shared";
  const test::ScopedEnv data("SOFTREG_DATA", shared.c_str());
  const test::ScopedEnv home("HOME", dir_.path().c_str());
  const test::ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
  EXPECT_EQ(run_cli({"data", "--dataset", "mnist"}), 1) << "not there yet";
  // train --download tries to fetch it; Fashion-MNIST's files under the name mnist fail its checksums:
  // exit 1 and nothing left behind.
  EXPECT_EQ(run_cli({"train", "--dataset", "mnist", "--download", "--mirror", server_.url("fashion", "good"),
                     "--out", (dir_ / "run").string()}),
            1);
  EXPECT_EQ(server_.ranges("good/train-images-idx3-ubyte.gz").size(), 1u);
  EXPECT_TRUE(listing(shared / "mnist").empty());
  EXPECT_FALSE(fs::exists(dir_ / "run" / "model.safetensors"));
  // The download lands in $SOFTREG_DATA/NAME, which --dataset then finds before Debian's copy.
  EXPECT_EQ(run_cli({"data", "download", "fashion-mnist", "--mirror", server_.url("fashion", "good")}), 0);
  EXPECT_TRUE(fs::exists(shared / "fashion-mnist/classes.txt"));
  EXPECT_EQ(locate_dataset(known_dataset("fashion-mnist")).folder, shared / "fashion-mnist");
  EXPECT_EQ(run_cli({"train", "--dataset", "fashion-mnist", "--epochs", "1", "--no-check", "--no-plots",
                     "--out", (dir_ / "run2").string()}),
            0);
  EXPECT_NE(read_all(dir_ / "run2" / "summary.json").find((shared / "fashion-mnist").string()),
            std::string::npos);
}

}  // namespace
}  // namespace softreg
