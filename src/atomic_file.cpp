// Atomic file writes: temp file beside the target, then rename.
#include "softreg/atomic_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "softreg/error.hpp"

namespace softreg {
namespace fs = std::filesystem;

FolderLock::FolderLock(const fs::path& lock_file, IfBusy if_busy, const std::string& busy_message,
                       const std::function<void()>& on_wait, const std::function<bool()>& should_stop) {
  fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error::in_file(lock_file, std::string("cannot create the lock file: ") + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
  if (if_busy == IfBusy::kFail) {
    ::close(fd_);
    throw Error(busy_message.empty() ? lock_file.string() + ": held by another process" : busy_message);
  }
  if (on_wait) on_wait();
  while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    if (should_stop && should_stop()) {
      ::close(fd_);
      throw Error(lock_file.string() + ": interrupted while waiting for another process");
    }
    ::usleep(100'000);
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  write_file_atomic(path, {content});
}

void write_file_atomic(const fs::path& path, std::initializer_list<std::string_view> pieces) {
  const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::string temp = (folder / ("." + path.filename().string() + ".tmp.XXXXXX")).string();
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) throw Error::in_file(path, std::string("cannot create a temp file: ") + std::strerror(errno));
  const auto fail = [&](const char* what) {
    const int saved = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    return Error::in_file(path, std::string(what) + ": " + std::strerror(saved));
  };
  for (const std::string_view content : pieces) {
    std::size_t written = 0;
    while (written < content.size()) {
      const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw fail("write failed");
      }
      written += static_cast<std::size_t>(n);
    }
  }
  // mkstemp makes the file 0600; give it the usual permissions for an output file.
  if (::fchmod(fd, 0644) != 0) throw fail("chmod failed");
  if (::close(fd) != 0) {
    ::unlink(temp.c_str());
    throw Error::in_file(path, std::string("close failed: ") + std::strerror(errno));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(temp.c_str());
    throw Error::in_file(path, std::string("cannot rename into place: ") + std::strerror(saved));
  }
}

}  // namespace softreg
