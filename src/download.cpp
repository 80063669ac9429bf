// Data sets by name and their downloads (libcurl for HTTP(S), OpenSSL's libcrypto for SHA-256, zlib for
// the content of gzip files).
#include "softreg/download.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "shared_library.hpp"
#include "softreg/atomic_file.hpp"
#include "softreg/clock.hpp"

namespace softreg {
namespace fs = std::filesystem;

namespace {

// The decompressed sizes of the MNIST family's four files (28x28 images, 60,000 train, 10,000 test).
constexpr std::uint64_t kTrainImagesBytes = 47'040'016, kTrainLabelsBytes = 60'008;
constexpr std::uint64_t kTestImagesBytes = 7'840'016, kTestLabelsBytes = 10'008;

std::vector<KnownDataset> make_known_datasets() {
  // Published SHA-256s as TensorFlow Datasets lists them (url_checksums/*.txt); content SHA-256s of
  // Fashion-MNIST computed from Debian's dataset-fashion-mnist, whose re-compressed files hold the same
  // bytes. Mirrors as torchvision and TensorFlow Datasets use them.
  std::vector<KnownDataset> sets;
  sets.push_back({"fashion-mnist",
                  "Fashion-MNIST: Zalando's article images, 10 classes",
                  {"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"},
                  {{{"train-images-idx3-ubyte.gz", 26421880,
                     "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", kTrainImagesBytes,
                     "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"},
                    {"train-labels-idx1-ubyte.gz", 29515,
                     "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", kTrainLabelsBytes,
                     "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"},
                    {"t10k-images-idx3-ubyte.gz", 4422102,
                     "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", kTestImagesBytes,
                     "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"},
                    {"t10k-labels-idx1-ubyte.gz", 5148,
                     "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", kTestLabelsBytes,
                     "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}}},
                  std::vector<std::string>(kFashionMnistClassNames.begin(), kFashionMnistClassNames.end()),
                  fs::path("/usr/share/datasets/fashion-mnist")});
  sets.push_back(
      {"mnist",
       "MNIST: handwritten digits, 10 classes",
       {"https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/", "http://yann.lecun.com/exdb/mnist/"},
       {{{"train-images-idx3-ubyte.gz", 9912422,
          "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", kTrainImagesBytes, ""},
         {"train-labels-idx1-ubyte.gz", 28881,
          "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", kTrainLabelsBytes, ""},
         {"t10k-images-idx3-ubyte.gz", 1648877,
          "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", kTestImagesBytes, ""},
         {"t10k-labels-idx1-ubyte.gz", 4542,
          "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", kTestLabelsBytes, ""}}},
       numbered_class_names(10),
       std::nullopt});
  sets.push_back(
      {"kmnist",
       "Kuzushiji-MNIST: cursive Japanese (hiragana) characters, 10 classes",
       {"http://codh.rois.ac.jp/kmnist/dataset/kmnist/"},
       {{{"train-images-idx3-ubyte.gz", 18165135,
          "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", kTrainImagesBytes, ""},
         {"train-labels-idx1-ubyte.gz", 29497,
          "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", kTrainLabelsBytes, ""},
         {"t10k-images-idx3-ubyte.gz", 3041136,
          "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", kTestImagesBytes, ""},
         {"t10k-labels-idx1-ubyte.gz", 5120,
          "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", kTestLabelsBytes, ""}}},
       // kmnist_classmap.csv: the romaji of お き す つ な は ま や れ を.
       {"o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"},
       std::nullopt});
  return sets;
}

std::string hex(const unsigned char* digest, unsigned size) {
  std::string out;
  for (unsigned i = 0; i < size; ++i)
    out += fmt::format("{:02x}", digest[i]);
  return out;
}

// libcrypto's digest functions, from the library opened at the first checksum: linked, it cost every
// process about 0.6 ms at start (BENCHMARKS.md, process start). Each is listed once, without its EVP_
// prefix, as cairo's are (plot/cairo_library.hpp).
#define SOFTREG_CRYPTO_FUNCTIONS(X) \
  X(MD_CTX_new)                     \
  X(MD_CTX_free)                    \
  X(sha256)                         \
  X(DigestInit_ex)                  \
  X(DigestUpdate)                   \
  X(DigestFinal_ex)
struct CryptoLibrary {
#define SOFTREG_CRYPTO_POINTER(name) decltype(&::EVP_##name) name = nullptr;
  SOFTREG_CRYPTO_FUNCTIONS(SOFTREG_CRYPTO_POINTER)
#undef SOFTREG_CRYPTO_POINTER
};

CryptoLibrary open_libcrypto() {
  // OpenSSL 3's soname; SOFTREG_LIBCRYPTO names another build.
  const SharedLibrary library("SOFTREG_LIBCRYPTO", "libcrypto.so.3", "check SHA-256 sums",
                              "install libssl3 (scripts/setup does)");
  CryptoLibrary crypto;
#define SOFTREG_CRYPTO_RESOLVE(name) \
  library.resolve("EVP_" #name, crypto.name, "is it OpenSSL 3's libcrypto?");
  SOFTREG_CRYPTO_FUNCTIONS(SOFTREG_CRYPTO_RESOLVE)
#undef SOFTREG_CRYPTO_RESOLVE
  return crypto;
}

// Opened once, by the first checksum (a failed attempt is tried again next time).
const CryptoLibrary& libcrypto() {
  static const CryptoLibrary crypto = open_libcrypto();
  return crypto;
}

struct DigestDeleter {
  void operator()(EVP_MD_CTX* ctx) const { libcrypto().MD_CTX_free(ctx); }
};
// An incremental SHA-256.
class Sha256 {
 public:
  Sha256() : crypto_(libcrypto()), ctx_(crypto_.MD_CTX_new()) {
    if (!ctx_ || crypto_.DigestInit_ex(ctx_.get(), crypto_.sha256(), nullptr) != 1)
      throw Error("SHA-256: cannot start");
  }
  void add(const void* data, std::size_t size) { crypto_.DigestUpdate(ctx_.get(), data, size); }
  std::string hex_digest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned size = 0;
    crypto_.DigestFinal_ex(ctx_.get(), digest, &size);
    return hex(digest, size);
  }

 private:
  const CryptoLibrary& crypto_;
  std::unique_ptr<EVP_MD_CTX, DigestDeleter> ctx_;
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

File open_or_throw(const fs::path& path, const char* mode) {
  File f(std::fopen(path.c_str(), mode));
  if (!f) throw Error::in_file(path, std::string("cannot open: ") + std::strerror(errno));
  return f;
}

std::string with_slash(std::string base) {
  if (base.empty() || base.back() != '/') base += '/';
  return base;
}

std::string megabytes(std::uint64_t bytes) {
  return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6);
}

void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// libcurl is opened when the first download starts instead of being linked: with the TLS, Kerberos,
// LDAP and SSH libraries it brings, it cost every softreg process about 3 ms at start (BENCHMARKS.md),
// and most runs never download. The header still gives the types and constants; these are the
// functions softreg calls, each listed once without its curl_ prefix.
#define SOFTREG_CURL_FUNCTIONS(X) \
  X(global_init)                  \
  X(easy_init)                    \
  X(easy_cleanup)                 \
  X(easy_setopt)                  \
  X(easy_getinfo)                 \
  X(easy_perform)                 \
  X(easy_strerror)
struct CurlLibrary {
#define SOFTREG_CURL_POINTER(name) decltype(&::curl_##name) name = nullptr;
  SOFTREG_CURL_FUNCTIONS(SOFTREG_CURL_POINTER)
#undef SOFTREG_CURL_POINTER
};

// The soname since libcurl 7.16 (2006); SOFTREG_LIBCURL names another build (e.g. libcurl-gnutls.so.4).
constexpr const char* kCurlLibraryName = "libcurl.so.4";

CurlLibrary open_libcurl() {
  const SharedLibrary library("SOFTREG_LIBCURL", kCurlLibraryName, "download",
                              "install libcurl4 (scripts/setup does)");
  CurlLibrary curl;
#define SOFTREG_CURL_RESOLVE(name) library.resolve("curl_" #name, curl.name, "is it libcurl?");
  SOFTREG_CURL_FUNCTIONS(SOFTREG_CURL_RESOLVE)
#undef SOFTREG_CURL_RESOLVE
  if (curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw Error("libcurl: cannot initialise");
  return curl;
}

// Opened once, by whichever download comes first (a failed attempt is tried again next time).
const CurlLibrary& libcurl() {
  static const CurlLibrary curl = open_libcurl();
  return curl;
}

// One HTTP(S) request for `url` into `out`, resuming at `offset` bytes (a Range request) when above 0.
struct Attempt {
  bool ok = false;
  bool transient = false;    // worth another try at the same mirror
  bool interrupted = false;  // should_stop said so
  std::string error;         // what went wrong, for the message
};

struct TransferState {
  std::FILE* out = nullptr;
  const fs::path* part = nullptr;
  std::uint64_t offset = 0;  // bytes already in the part file when the request started
  std::uint64_t received = 0;
  std::uint64_t cap = 0;
  bool restarted = false;  // the server ignored the Range request: writing from 0
  bool too_big = false;
  bool write_failed = false;
  bool interrupted = false;
  bool first_write = true;
  const CurlLibrary* api = nullptr;
  CURL* curl = nullptr;
  const DownloadOptions* options = nullptr;
  DownloadProgress progress;
  std::chrono::steady_clock::time_point started;
  std::chrono::steady_clock::time_point last_report;
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto& s = *static_cast<TransferState*>(user);
  const std::size_t bytes = size * count;
  if (s.first_write) {
    s.first_write = false;
    long status = 0;
    s.api->easy_getinfo(s.curl, CURLINFO_RESPONSE_CODE, &status);
    if (s.offset > 0 && status == 200) {  // no partial content: the whole file again, from the start
      if (std::fflush(s.out) != 0 || ::ftruncate(fileno(s.out), 0) != 0 ||
          std::fseek(s.out, 0, SEEK_SET) != 0) {
        s.write_failed = true;
        return 0;
      }
      s.offset = 0;
      s.restarted = true;
    }
  }
  if (s.offset + s.received + bytes > s.cap) {
    s.too_big = true;
    return 0;
  }
  if (std::fwrite(data, 1, bytes, s.out) != bytes) {
    s.write_failed = true;
    return 0;
  }
  s.received += bytes;
  return bytes;
}

int on_transfer_info(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto& s = *static_cast<TransferState*>(user);
  if (s.options->should_stop && s.options->should_stop()) {
    s.interrupted = true;
    return 1;  // abandons the transfer
  }
  const auto clock = std::chrono::steady_clock::now();
  if (s.options->on_progress && clock - s.last_report > std::chrono::milliseconds(100)) {
    s.last_report = clock;
    s.progress.done = s.offset + static_cast<std::uint64_t>(now);
    if (total > 0) s.progress.total = s.offset + static_cast<std::uint64_t>(total);
    s.progress.seconds = std::chrono::duration<double>(clock - s.started).count();
    s.progress.bytes_per_second = s.progress.seconds > 0 ? static_cast<double>(now) / s.progress.seconds : 0;
    s.options->on_progress(s.progress);
  }
  return 0;
}

Attempt fetch(const std::string& url, const fs::path& part, std::uint64_t cap, const PublishedFile& file,
              const DownloadOptions& options, std::chrono::steady_clock::time_point started) {
  const CurlLibrary& api = libcurl();
  Attempt attempt;
  std::error_code ec;
  const std::uint64_t offset = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
  File out = open_or_throw(part, "ab");
  std::unique_ptr<CURL, decltype(api.easy_cleanup)> curl(api.easy_init(), api.easy_cleanup);
  if (!curl) throw Error("libcurl: cannot start a transfer");
  TransferState state;
  state.out = out.get();
  state.part = &part;
  state.offset = offset;
  state.cap = cap;
  state.api = &api;
  state.curl = curl.get();
  state.options = &options;
  state.progress.file = file.name;
  state.progress.url = url;
  state.progress.total = file.size;
  state.started = started;
  char error[CURL_ERROR_SIZE] = {};
  const std::string range = fmt::format("{}-", offset);
  CURL* c = curl.get();
  api.easy_setopt(c, CURLOPT_URL, url.c_str());
  api.easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  api.easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  api.easy_setopt(c, CURLOPT_FAILONERROR, 1L);  // HTTP errors are errors, their bodies not data
  api.easy_setopt(c, CURLOPT_USERAGENT, "softreg");
  api.easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout_seconds * 1000));
  // A stall: below one byte a second for the stall timeout.
  api.easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  api.easy_setopt(c, CURLOPT_LOW_SPEED_TIME, std::max(1L, static_cast<long>(options.stall_timeout_seconds)));
  api.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  api.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
  api.easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");  // a server cannot redirect to a local file
  api.easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  api.easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  api.easy_setopt(c, CURLOPT_WRITEDATA, &state);
  api.easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  api.easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_transfer_info);
  api.easy_setopt(c, CURLOPT_XFERINFODATA, &state);
  if (offset > 0) api.easy_setopt(c, CURLOPT_RANGE, range.c_str());
  // The proxy variables (http_proxy, https_proxy, no_proxy) are libcurl's defaults.
  const CURLcode code = api.easy_perform(c);
  long status = 0;
  api.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (std::fflush(out.get()) != 0) state.write_failed = true;
  if (state.interrupted) {
    attempt.interrupted = true;
    return attempt;
  }
  if (state.write_failed) throw Error::in_file(part, std::string("cannot write: ") + std::strerror(errno));
  if (code == CURLE_OK) {
    attempt.ok = true;
    return attempt;
  }
  if (state.too_big) {
    attempt.error = fmt::format("sent more than {} bytes (the file is {})", cap, megabytes(file.size));
    return attempt;
  }
  if (code == CURLE_HTTP_RETURNED_ERROR) {
    attempt.error = fmt::format("HTTP {}", status);
    if (status == 416 && offset > 0) {  // the part is no prefix of what the server has: start over
      out.reset();
      fs::remove(part, ec);
      attempt.transient = true;
      return attempt;
    }
    attempt.transient = status >= 500 || status == 408 || status == 429;
    return attempt;
  }
  attempt.error = error[0] ? std::string(error) : api.easy_strerror(code);
  if (code == CURLE_OPERATION_TIMEDOUT) attempt.error = "timed out: " + attempt.error;
  attempt.transient = code != CURLE_UNSUPPORTED_PROTOCOL && code != CURLE_URL_MALFORMAT &&
                      code != CURLE_TOO_MANY_REDIRECTS && code != CURLE_COULDNT_RESOLVE_HOST &&
                      code != CURLE_FILE_COULDNT_READ_FILE;
  return attempt;
}

// Sleeps `seconds`, waking early (false) when should_stop asks to.
bool pause(double seconds, const DownloadOptions& options) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (options.should_stop && options.should_stop()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

DownloadedFile download_file(const PublishedFile& file, const fs::path& folder,
                             const std::vector<std::string>& mirrors, const DownloadOptions& options) {
  const fs::path target = folder / file.name;
  const fs::path part = folder / ("." + file.name + ".part");
  // What a mirror may send at most: a re-compressed file differs in size from the published one, but
  // not by this much (and the content check bounds what it may decompress to).
  const std::uint64_t cap = 4 * std::max(file.size, file.content_size / 2) + (1u << 20);
  std::error_code ec;
  std::vector<std::string> failures;
  for (const std::string& base : mirrors) {
    const std::string url = with_slash(base) + file.name;
    const auto started = std::chrono::steady_clock::now();
    Attempt attempt;
    for (int tried = 0;; ++tried) {
      attempt = fetch(url, part, cap, file, options, started);
      if (attempt.interrupted) {
        fs::remove(part, ec);
        throw DownloadInterrupted();
      }
      if (attempt.ok || !attempt.transient || tried >= options.retries) break;
      const double wait = options.backoff_seconds * static_cast<double>(1 << std::min(tried, 16));
      if (options.on_notice) {
        options.on_notice(fmt::format("{}: {}; trying again in {:g} s (try {} of {})", url, attempt.error,
                                      wait, tried + 2, options.retries + 1));
      }
      if (!pause(wait, options)) {
        fs::remove(part, ec);
        throw DownloadInterrupted();
      }
    }
    if (!attempt.ok) {
      fs::remove(part, ec);  // the next mirror's bytes may differ (another gzip): no resuming across mirrors
      failures.push_back(fmt::format("{}: {}", url, attempt.error));
      if (options.on_notice)
        options.on_notice(failures.back() + (&base != &mirrors.back() ? "; trying the next mirror" : ""));
      continue;
    }
    Verified verified;
    try {
      verified = verify_published_file(file, part);
    } catch (const Error& e) {
      fs::remove(part, ec);
      std::string why = e.what();
      if (const auto colon = why.find(": "); colon != std::string::npos) why = why.substr(colon + 2);
      failures.push_back(fmt::format("{}: {}", url, why));
      if (options.on_notice) options.on_notice(failures.back() + "; deleted it");
      continue;
    }
    fsync_path(part, O_RDONLY);
    fs::rename(part, target, ec);
    if (ec) throw Error::in_file(target, "cannot move the downloaded file into place: " + ec.message());
    fsync_path(folder, O_RDONLY | O_DIRECTORY);
    const std::uint64_t bytes = fs::file_size(target, ec);
    if (options.on_progress) {
      DownloadProgress done;
      done.file = file.name;
      done.url = url;
      done.done = done.total = bytes;
      done.seconds = seconds_since(started);
      done.bytes_per_second = done.seconds > 0 ? static_cast<double>(bytes) / done.seconds : 0;
      done.finished = true;
      done.verified = verified;
      options.on_progress(done);
    }
    return {file.name, url, bytes, verified};
  }
  std::string message = fmt::format("could not download {}", file.name);
  for (const std::string& failure : failures)
    message += "; " + failure;
  if (failures.empty()) message += ": no mirror to try";
  throw Error(message);
}

}  // namespace

const std::vector<KnownDataset>& known_datasets() {
  static const std::vector<KnownDataset> sets = make_known_datasets();
  return sets;
}

const KnownDataset& known_dataset(const std::string& name) {
  std::string names;
  for (const KnownDataset& set : known_datasets()) {
    if (set.name == name) return set;
    names += (names.empty() ? "" : ", ") + set.name;
  }
  throw UsageError(fmt::format("unknown data set '{}' (known: {})", name, names));
}

std::vector<fs::path> dataset_folders(const KnownDataset& dataset) {
  std::vector<fs::path> folders;
  if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache && *cache) {
    folders.push_back(fs::path(cache) / "softreg" / dataset.name);
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    folders.push_back(fs::path(home) / ".cache" / "softreg" / dataset.name);
  }
  if (const char* env = std::getenv("SOFTREG_DATA"); env && *env)
    folders.push_back(fs::path(env) / dataset.name);
  if (dataset.system_folder) folders.push_back(*dataset.system_folder);
  return folders;
}

fs::path default_download_folder(const KnownDataset& dataset) {
  if (const char* env = std::getenv("SOFTREG_DATA"); env && *env) return fs::path(env) / dataset.name;
  const std::vector<fs::path> folders = dataset_folders(dataset);
  if (folders.empty() || folders.front() == dataset.system_folder)
    throw Error("no cache folder: set HOME, XDG_CACHE_HOME or SOFTREG_DATA, or pass --to DIR");
  return folders.front();
}

std::optional<DataFiles> find_dataset(const KnownDataset& dataset) {
  for (const fs::path& folder : dataset_folders(dataset)) {
    if (auto files = find_data_files(folder)) return files;
  }
  return std::nullopt;
}

DataFiles locate_dataset(const KnownDataset& dataset) {
  if (auto files = find_dataset(dataset)) return *files;
  std::string looked;
  for (const fs::path& folder : dataset_folders(dataset))
    looked += (looked.empty() ? "" : ", ") + folder.string();
  throw Error(
      fmt::format("data set '{}' not found (looked in {}); fetch it with 'softreg data download {}' "
                  "(or train --download)",
                  dataset.name, looked, dataset.name));
}

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
  Sha256 sha;
  sha.add(bytes.data(), bytes.size());
  return sha.hex_digest();
}

std::string sha256_file(const fs::path& path) {
  File f = open_or_throw(path, "rb");
  Sha256 sha;
  std::vector<unsigned char> buffer(1 << 16);
  std::size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), f.get())) > 0)
    sha.add(buffer.data(), n);
  if (std::ferror(f.get())) throw Error::in_file(path, "read error");
  return sha.hex_digest();
}

std::string gzip_content_sha256(const fs::path& path, std::uint64_t max_content) {
  File f = open_or_throw(path, "rb");
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) throw Error("zlib: cannot start");  // gzip or zlib header
  const std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
  Sha256 sha;
  std::vector<unsigned char> in(1 << 16), out(1 << 16);
  std::uint64_t total = 0;
  bool ended = false;
  for (;;) {
    if (z.avail_in == 0) {
      const std::size_t n = std::fread(in.data(), 1, in.size(), f.get());
      if (n == 0) break;
      z.next_in = in.data();
      z.avail_in = static_cast<uInt>(n);
    }
    if (ended) {  // another gzip member follows
      inflateReset(&z);
      ended = false;
    }
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    const int rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) throw Error::in_file(path, "not a valid gzip file");
    const std::size_t produced = out.size() - z.avail_out;
    total += produced;
    if (total > max_content)
      throw Error::in_file(path, fmt::format("decompresses to more than {} bytes", max_content));
    sha.add(out.data(), produced);
    if (rc == Z_STREAM_END) ended = true;
  }
  if (!ended) throw Error::in_file(path, "truncated gzip file");
  return sha.hex_digest();
}

// A mirror of another data set serves files of the same names: ": this is fashion-mnist's
// train-images-idx3-ubyte.gz", where the file at `path` is another known data set's (as published or
// re-compressed); "" otherwise.
std::string whose_file_it_is(const PublishedFile& wanted, const fs::path& path, const std::string& published,
                             const std::optional<std::string>& content_digest) {
  std::string content = content_digest.value_or("");
  if (!content_digest) {  // not decompressed yet, or not within the size pinned for `wanted`
    std::uint64_t largest = 0;
    for (const KnownDataset& dataset : known_datasets()) {
      for (const PublishedFile& known : dataset.files)
        largest = std::max(largest, known.content_size);
    }
    try {
      content = gzip_content_sha256(path, largest);
    } catch (const Error&) {  // not gzip, or larger than any: nobody's
    }
  }
  for (const KnownDataset& dataset : known_datasets()) {
    for (const PublishedFile& known : dataset.files) {
      if (&known == &wanted) continue;
      if (known.sha256 == published || (!known.content_sha256.empty() && known.content_sha256 == content))
        return fmt::format(": this is {}'s {}", dataset.name, known.name);
    }
  }
  return {};
}

Verified verify_published_file(const PublishedFile& file, const fs::path& path) {
  const std::string published = sha256_file(path);
  if (published == file.sha256) return Verified::kPublished;
  std::string content = "not pinned";
  std::optional<std::string> digest;  // of the decompressed content, where it was computed
  if (!file.content_sha256.empty()) {
    try {
      digest = gzip_content_sha256(path, file.content_size);
      content = *digest;
    } catch (const Error& e) {
      std::string why = e.what();
      content = why.substr(why.find(": ") == std::string::npos ? 0 : why.find(": ") + 2);
    }
    if (content == file.content_sha256) return Verified::kContent;
  }
  const std::string whose = whose_file_it_is(file, path, published, digest);
  throw Error::in_file(
      path, fmt::format("checksum mismatch: SHA-256 {} (published: {}){}{}", published, file.sha256,
                        file.content_sha256.empty() ? std::string()
                                                    : fmt::format(", content SHA-256 {} (expected: {})",
                                                                  content, file.content_sha256),
                        whose));
}

DownloadReport download_dataset(const KnownDataset& dataset, const fs::path& folder,
                                const DownloadOptions& options) {
  // Every file is checked, so the checksums' library is opened first: missing, it must not read as a
  // mismatch, which would delete the files already there.
  libcrypto();
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (!fs::is_directory(folder, ec)) throw Error::in_file(folder, "cannot create the folder");
  const std::vector<std::string>& mirrors = options.mirrors.empty() ? dataset.mirrors : options.mirrors;
  // Downloads into one folder take turns; the later one then finds the files there, verified.
  bool interrupted = false;
  std::unique_ptr<FolderLock> lock;
  try {
    lock = std::make_unique<FolderLock>(
        folder / ".download.lock", FolderLock::IfBusy::kWait, "",
        [&] {
          if (options.on_notice)
            options.on_notice("another softreg is downloading into " + folder.string() + "; waiting");
        },
        [&] { return interrupted = options.should_stop && options.should_stop(); });
  } catch (const Error&) {
    if (interrupted) throw DownloadInterrupted();
    throw;
  }
  DownloadReport report{folder, {}};
  for (const PublishedFile& file : dataset.files) {
    const fs::path target = folder / file.name;
    if (fs::exists(target, ec)) {
      try {
        const Verified verified = verify_published_file(file, target);
        report.files.push_back({file.name, "", fs::file_size(target, ec), verified});
        continue;
      } catch (const Error& e) {
        if (options.on_notice) options.on_notice(std::string(e.what()) + "; fetching it again");
        fs::remove(target, ec);
      }
    }
    report.files.push_back(download_file(file, folder, mirrors, options));
  }
  std::string names;
  for (const std::string& name : dataset.class_names)
    names += name + "\n";
  write_file_atomic(folder / "classes.txt", names);
  return report;
}

std::string_view describe(Verified verified) {
  return verified == Verified::kPublished ? "published SHA-256" : "content SHA-256";
}

}  // namespace softreg
