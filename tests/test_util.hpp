// Helpers shared by the tests: temp folders, hand-made IDX files and running the CLI as a process.
#pragma once

#include <libdeflate.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "softreg/dataset.hpp"
#include "softreg/error.hpp"

namespace softreg::test {

/// Expects `f` to throw softreg::Error whose message contains `fragment`.
template <class F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing: " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << "message was: " << e.what();
  }
}

/// Sets (or, with nullptr, unsets) an environment variable for the scope, then puts it back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) saved_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (saved_) {
      ::setenv(name_.c_str(), saved_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> saved_;
};

/// A fresh folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("softreg-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline void put_be32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<std::uint8_t>(v >> shift));
}

/// An IDX file: magic, dims, then the data bytes as given (which may disagree with dims on purpose).
inline std::vector<std::uint8_t> idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& dims,
                                           const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> out;
  put_be32(out, magic);
  for (std::uint32_t d : dims)
    put_be32(out, d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

inline std::vector<std::uint8_t> gzip_bytes(const std::vector<std::uint8_t>& raw) {
  libdeflate_compressor* c = libdeflate_alloc_compressor(6);
  std::vector<std::uint8_t> out(libdeflate_gzip_compress_bound(c, raw.size()));
  out.resize(libdeflate_gzip_compress(c, raw.data(), raw.size(), out.data(), out.size()));
  libdeflate_free_compressor(c);
  return out;
}

/// A dataset of n random h x w images with labels in [0, classes), for unit tests.
inline Dataset random_dataset(std::size_t n, std::size_t h, std::size_t w, int classes, std::uint32_t seed) {
  std::mt19937 gen(seed);
  Dataset set;
  set.count = n;
  set.height = h;
  set.width = w;
  set.num_classes = classes;
  std::vector<std::uint8_t> pixels(n * h * w);
  set.labels.resize(n);
  for (auto& p : pixels)
    p = static_cast<std::uint8_t>(gen() % 256);
  set.pixels = std::move(pixels);
  for (auto& l : set.labels)
    l = static_cast<Label>(gen() % static_cast<unsigned>(classes));
  return set;
}

/// Classes a linear model can learn: random side x side images dimmed by `dim`, where label k sets the
/// pixels [k * band, (k + 1) * band) to `bright`.
inline Dataset banded_dataset(std::size_t n, std::size_t side, int classes, std::size_t band,
                              std::uint8_t dim, std::uint8_t bright, std::uint32_t seed) {
  Dataset d = random_dataset(n, side, side, classes, seed);
  std::uint8_t* px = d.pixels.mutable_data();
  const std::size_t D = side * side;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint8_t* img = px + i * D;
    for (std::size_t p = 0; p < D; ++p)
      img[p] = static_cast<std::uint8_t>(img[p] / dim);
    for (std::size_t p = band * d.labels[i]; p < band * d.labels[i] + band && p < D; ++p)
      img[p] = bright;
  }
  return d;
}

/// Ten classes of 8x8 images a linear model learns in a few epochs: each label brightens its own band.
inline Dataset learnable_8x8(std::size_t n, std::uint32_t seed) {
  return banded_dataset(n, /*side=*/8, /*classes=*/10, /*band=*/6, /*dim=*/4, /*bright=*/230, seed);
}

/// The same rows as float32 features (each byte / 255, so the model sees the same values), as a
/// feature dataset of height 1 and width D.
inline Dataset as_float_features(const Dataset& bytes) {
  Dataset f = bytes;
  f.kind = InputKind::kFeatures;
  f.element = ElementType::kF32;
  f.height = 1;
  f.width = bytes.features();
  std::vector<std::uint8_t> raw(bytes.count * f.row_bytes());
  for (std::size_t i = 0; i < bytes.count; ++i) {
    for (std::size_t d = 0; d < bytes.features(); ++d) {
      const float v = bytes.value(i, d);
      std::memcpy(raw.data() + (i * bytes.features() + d) * sizeof(float), &v, sizeof(float));
    }
  }
  f.pixels = std::move(raw);
  return f;
}

/// Runs `program` with `args` as a separate process, its output thrown away, and returns its exit code
/// (128 + the signal when a signal ended it); with `interrupt_after_ms` >= 0 it gets SIGINT that long
/// after it started.
inline int run_program(const std::string& program, const std::vector<std::string>& args,
                       int interrupt_after_ms = -1) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<std::string> copy = args;
    std::string path = program;
    std::vector<char*> argv{path.data()};
    for (std::string& a : copy)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(126);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  if (interrupt_after_ms >= 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(interrupt_after_ms));
    kill(pid, SIGINT);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace softreg::test
