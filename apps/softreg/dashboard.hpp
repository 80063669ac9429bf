// The dashboard as the CLI runs it: the server module (libsoftreg-serve.so, src/serve/plugin_abi.h)
// opened when a command serves, so that no other command loads cpp-httplib and OpenSSL at start.
#pragma once

#include <filesystem>
#include <string>

#include "serve/plugin_abi.h"

namespace softreg::cli {

class ServedDashboard {
 public:
  /// Opens the server module and starts a dashboard over `runs` (serve::Dashboard::start). Throws
  /// Error when the module cannot be loaded or is of another version, or when the server cannot start.
  ServedDashboard(const std::filesystem::path& runs, const std::string& host, int port);
  ~ServedDashboard();  // stops the server
  ServedDashboard(const ServedDashboard&) = delete;
  ServedDashboard& operator=(const ServedDashboard&) = delete;

  std::string url() const;  // http://host:port/

 private:
  void* dashboard_ = nullptr;
  SoftregDashboardUrl url_ = nullptr;
  SoftregDashboardStop stop_ = nullptr;
};

/// Where the server module is looked for: SOFTREG_SERVE_MODULE when set, else beside the executable
/// (a build tree), else in the installed layout (PREFIX/bin/softreg, PREFIX/LIBDIR/softreg/).
std::filesystem::path serve_module_path();

}  // namespace softreg::cli
