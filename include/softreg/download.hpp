// Data sets by name: the IDX family (Fashion-MNIST, MNIST, Kuzushiji-MNIST) with their mirrors, pinned
// checksums and class names, where each is looked for, and downloading one with libcurl: mirrors in
// order, redirects, timeouts, retries with backoff, resume with Range requests, and nothing unverified
// ever in place (a temp file in the target folder, verified, fsynced, renamed).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/error.hpp"

namespace softreg {

/// One of a data set's four files as it is published.
struct PublishedFile {
  std::string name;            // "train-images-idx3-ubyte.gz": also the name in the folder
  std::uint64_t size = 0;      // bytes as published
  std::string sha256;          // of the file as published (hex)
  std::uint64_t content_size;  // bytes of the decompressed IDX content
  std::string content_sha256;  // of that content; "" when not pinned. It verifies the same data
                               // whatever gzip produced the file (Debian re-compressed Fashion-MNIST)
};

struct KnownDataset {
  std::string name;                    // "fashion-mnist"
  std::string title;                   // "Fashion-MNIST (Zalando)"
  std::vector<std::string> mirrors;    // base URLs, tried in order; a file's URL is base + name
  std::array<PublishedFile, 4> files;  // train images, train labels, test images, test labels
  std::vector<std::string> class_names;
  std::optional<std::filesystem::path> system_folder;  // where a distribution package puts it
};

/// The data sets softreg knows by name.
const std::vector<KnownDataset>& known_datasets();
/// The known data set called `name`; an Error lists the known names otherwise.
const KnownDataset& known_dataset(const std::string& name);

/// Where a data set is looked for, in order: ~/.cache/softreg/NAME (or $XDG_CACHE_HOME/softreg/NAME),
/// $SOFTREG_DATA/NAME, then the system folder (Debian's package, for Fashion-MNIST).
std::vector<std::filesystem::path> dataset_folders(const KnownDataset& dataset);
/// Where `softreg data download` puts a data set by default: $SOFTREG_DATA/NAME when that variable is
/// set (tests, shared machines), else the cache folder.
std::filesystem::path default_download_folder(const KnownDataset& dataset);
/// The files in the first of dataset_folders holding all four; nullopt when none does.
std::optional<DataFiles> find_dataset(const KnownDataset& dataset);
/// The same, but an Error names where it looked and the command that fetches it when none does.
DataFiles locate_dataset(const KnownDataset& dataset);

/// SHA-256 (hex) of bytes, of a file, and of a gzip file's decompressed content (at most `max_content`
/// bytes: more is an error, not a hang).
std::string sha256_hex(std::span<const std::uint8_t> bytes);
std::string sha256_file(const std::filesystem::path& path);
std::string gzip_content_sha256(const std::filesystem::path& path, std::uint64_t max_content);

/// How a file passed: its published SHA-256, or the SHA-256 of its content. Throws Error naming the
/// file and both checksums expected and found when it passes neither.
enum class Verified { kPublished, kContent };
/// "published SHA-256" or "content SHA-256".
std::string_view describe(Verified verified);
Verified verify_published_file(const PublishedFile& file, const std::filesystem::path& path);

/// A download stopped by should_stop (Ctrl-C); nothing was left behind.
class DownloadInterrupted : public Error {
 public:
  DownloadInterrupted() : Error("download interrupted") {}
};

struct DownloadProgress {
  std::string file;
  std::string url;
  std::uint64_t done = 0;   // bytes of the file so far (a resumed part included)
  std::uint64_t total = 0;  // expected bytes (0 while not known)
  double seconds = 0;       // since this file's download started
  double bytes_per_second = 0;
  bool finished = false;  // the last call for a file: downloaded and verified
  Verified verified = Verified::kPublished;
};

struct DownloadOptions {
  std::vector<std::string> mirrors;  // base URLs replacing the data set's own; empty: its own
  double connect_timeout_seconds = 20;
  double stall_timeout_seconds = 30;  // a transfer that receives nothing this long is abandoned
  int retries = 3;                    // further tries of one mirror after a transient failure
  double backoff_seconds = 1;         // before the first retry; doubles each time
  std::function<void(const DownloadProgress&)> on_progress;
  std::function<void(const std::string&)> on_notice;  // one-line notes: retries, next mirror, waiting
  std::function<bool()> should_stop;                  // asked often; true abandons the download
};

struct DownloadedFile {
  std::string name;
  std::string url;  // "" when the file was already there, verified
  std::uint64_t bytes = 0;
  Verified verified = Verified::kPublished;
};

struct DownloadReport {
  std::filesystem::path folder;
  std::vector<DownloadedFile> files;
};

/// Fetches the data set's four files into `folder` (created if missing) and writes classes.txt there.
/// Files already there that verify are kept; others are fetched again. Processes downloading into the
/// same folder take turns (a lock file); the folder never holds an unverified file under a final name.
/// Throws Error naming the file and each mirror's failure, or DownloadInterrupted.
DownloadReport download_dataset(const KnownDataset& dataset, const std::filesystem::path& folder,
                                const DownloadOptions& options = {});

}  // namespace softreg
