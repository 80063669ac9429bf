// softreg serve: a local dashboard over a folder of run folders. An HTTP server (cpp-httplib) with a
// JSON API (runs, metrics, live epochs as Server-Sent Events, the run's files, predictions for uploaded
// images) and the page under web/, embedded in the binary. Only files inside run folders under the
// runs folder are ever read; see resolve_run and resolve_run_file.
//
//   serve::Dashboard dashboard({.runs = "runs", .port = 0});
//   dashboard.start();                 // binds, or throws Error naming the address
//   std::cout << dashboard.url();      // http://127.0.0.1:<port>/
//   dashboard.wait();                  // until stop() (from another thread or a signal handler's waker)
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace softreg::serve {

// ---- Run folders ---------------------------------------------------------------------------------

/// What a run folder says of its run.
enum class RunState {
  kTraining,  // a process holds its lock (softreg train is writing into it)
  kFinished,  // summary.json covers every epoch of metrics.csv
  kStopped,   // neither: interrupted (Ctrl-C, killed) or still before its first epoch
};
const char* run_state_name(RunState state);
RunState run_state(const std::filesystem::path& run);

/// The ids of the runs under `root`: the names of its subfolders (not symlinks, not hidden) that hold a
/// metrics.csv, summary.json or model.safetensors, sorted.
std::vector<std::string> list_runs(const std::filesystem::path& root);

/// The folder of run `id` under `root`, canonical, or nullopt when `id` is not the name of a folder
/// directly under root (".", "..", hidden names, anything with a slash or NUL) or when it resolves (through
/// symlinks) to a place outside root. A symlink to a run inside root (runs/latest) is followed.
std::optional<std::filesystem::path> resolve_run(const std::filesystem::path& root, std::string_view id);

/// The regular file `name` directly inside the canonical run folder `run`, or nullopt for anything else
/// (subfolders, hidden files such as the lock, names with a slash, symlinks leading out of the run).
std::optional<std::filesystem::path> resolve_run_file(const std::filesystem::path& run,
                                                      std::string_view name);

/// The rows of a CSV with a header line (metrics.csv) as a JSON array of objects, numbers as numbers;
/// rows that do not have the header's cell count (none in an atomically written file) are left out.
std::string csv_rows_json(std::string_view csv);

// ---- The server ----------------------------------------------------------------------------------

struct ServerOptions {
  std::filesystem::path runs = "runs";
  std::string host = "127.0.0.1";
  int port = 8765;  // 0: any free port (port() tells which)
  /// Request bodies larger than this get 413.
  std::size_t max_body_bytes = 8u << 20;
  /// Uploaded images with a longer side get 400.
  int max_image_side = 4096;
  /// How often the live-epoch stream looks at metrics.csv.
  std::chrono::milliseconds poll_interval{200};
  /// How long a connection may wait for the rest of a request (or the next one) before it is closed;
  /// a client that stalls holds one connection this long, never the server.
  std::chrono::milliseconds read_timeout{5000};
  /// Connections served at once (an open event stream holds one).
  int threads = 64;
};

class Dashboard {
 public:
  explicit Dashboard(ServerOptions options);
  ~Dashboard();  // stops the server
  Dashboard(const Dashboard&) = delete;
  Dashboard& operator=(const Dashboard&) = delete;

  /// Binds the address and starts serving on a background thread; throws Error when the runs folder
  /// is missing or the address cannot be bound (in use, not local).
  void start();
  /// Stops accepting, ends the event streams and joins the server thread; safe to call twice.
  void stop();
  /// Blocks until stop() has been called.
  void wait();

  int port() const;
  std::string url() const;  // http://host:port/

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace softreg::serve
