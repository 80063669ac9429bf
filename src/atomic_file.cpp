// Atomic file writes: temp file beside the target, then rename.
#include "softreg/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "softreg/error.hpp"

namespace softreg {
namespace fs = std::filesystem;

namespace {

// An open-file-description lock on the whole file: released when the descriptor is closed or the
// process ends, like flock, but unlike flock it can be asked about without taking it (F_OFD_GETLK),
// which is how the dashboard tells a run in training from a stopped one.
struct flock whole_file_lock(short type) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = 0;
  lock.l_len = 0;  // to the end, however long
  return lock;
}

bool try_lock(int fd) {
  struct flock lock = whole_file_lock(F_WRLCK);
  return ::fcntl(fd, F_OFD_SETLK, &lock) == 0;
}

}  // namespace

FolderLock::FolderLock(const fs::path& lock_file, IfBusy if_busy, const std::string& busy_message,
                       const std::function<void()>& on_wait, const std::function<bool()>& should_stop) {
  fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error::in_file(lock_file, std::string("cannot create the lock file: ") + std::strerror(errno));
  if (try_lock(fd_)) return;
  if (if_busy == IfBusy::kFail) {
    ::close(fd_);
    throw Error(busy_message.empty() ? lock_file.string() + ": held by another process" : busy_message);
  }
  if (on_wait) on_wait();
  while (!try_lock(fd_)) {
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

bool FolderLock::is_held(const fs::path& lock_file) {
  const int fd = ::open(lock_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // no lock file: never locked
  struct flock lock = whole_file_lock(F_WRLCK);
  const bool held = ::fcntl(fd, F_OFD_GETLK, &lock) == 0 && lock.l_type != F_UNLCK;
  ::close(fd);
  return held;
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  write_file_atomic(path, {content});
}

void write_file_atomic(const fs::path& path, std::initializer_list<std::string_view> pieces) {
  // Said before anything is written, not as a failed rename after it ("Is a directory").
  if (std::error_code ec; fs::is_directory(path, ec))
    throw Error::in_file(path, "is a folder, not a file name");
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
