// A path under the temp directory for one fuzzer process's scratch files, named after the process and
// removed when it exits: libFuzzer ends a run with exit(), which runs static destructors, so fuzzing
// (CI's, or at a desk) leaves nothing behind in /tmp.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

class ScratchPath {
 public:
  explicit ScratchPath(const std::string& stem, const std::string& extension = "")
      : path_(std::filesystem::temp_directory_path() / (stem + std::to_string(::getpid()) + extension)) {}
  ~ScratchPath() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchPath(const ScratchPath&) = delete;
  ScratchPath& operator=(const ScratchPath&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};
