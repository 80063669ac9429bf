// Writing files so that a reader never sees half of one: a temp file in the same folder, renamed over
// the target when complete.
#pragma once

#include <filesystem>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

namespace softreg {

/// An exclusive lock (an open-file-description lock, fcntl F_OFD_SETLK) on a lock file, held while the object
/// lives and released when the process ends in any way, so a crashed holder never leaves a folder locked.
/// Processes writing into one folder take turns (kWait) or the later one stops with an Error naming the
/// folder (kFail).
class FolderLock {
 public:
  enum class IfBusy { kWait, kFail };
  /// kWait: `on_wait` is called once if another process holds the lock, and `should_stop` is asked while
  /// waiting (true: throws Error "interrupted"). kFail: throws `busy_message` when it is held.
  FolderLock(const std::filesystem::path& lock_file, IfBusy if_busy, const std::string& busy_message = {},
             const std::function<void()>& on_wait = {}, const std::function<bool()>& should_stop = {});
  ~FolderLock();
  /// Whether some FolderLock (in any process, this one included) holds `lock_file` now; asks without
  /// taking the lock, so it never makes a holder-to-be fail.
  static bool is_held(const std::filesystem::path& lock_file);
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

/// Writes `content` to a temp file beside `path`, then renames it over `path`.
void write_file_atomic(const std::filesystem::path& path, std::string_view content);
/// The same for content in several pieces, written one after another.
void write_file_atomic(const std::filesystem::path& path, std::initializer_list<std::string_view> pieces);

}  // namespace softreg
