// Opening the dashboard's server module (dashboard.hpp).
#include "dashboard.hpp"

#include <fmt/format.h>

#include <array>
#include <cstdlib>
#include <string_view>
#include <system_error>

#include "serve/plugin_abi.h"
#include "shared_library.hpp"
#include "softreg/error.hpp"

namespace softreg::cli {

namespace {

constexpr const char* kModuleName = "libsoftreg-serve.so";

}  // namespace

std::filesystem::path serve_module_path() {
  if (const char* env = std::getenv("SOFTREG_SERVE_MODULE"); env && *env) return env;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return kModuleName;  // then the loader's search path
  const std::filesystem::path beside = exe.parent_path() / kModuleName;
  const std::filesystem::path installed = exe.parent_path() / SOFTREG_SERVE_MODULE_FROM_BINDIR / kModuleName;
  return std::filesystem::exists(beside, ec) || !std::filesystem::exists(installed, ec) ? beside : installed;
}

ServedDashboard::ServedDashboard(const std::filesystem::path& runs, const std::string& host, int port) {
  // SharedLibrary reads the variable again: the path computed here is its default.
  const std::string path = serve_module_path().string();
  const SharedLibrary module("SOFTREG_SERVE_MODULE", path.c_str(), "serve the dashboard",
                             "it is built beside build/softreg (cmake --build build) and installed with it");
  SoftregServeVersion version = nullptr;
  SoftregDashboardStart start = nullptr;
  module.resolve(kSoftregServeVersionSymbol, version, "not softreg's dashboard module");
  module.resolve(kSoftregDashboardStartSymbol, start, "not softreg's dashboard module");
  module.resolve(kSoftregDashboardUrlSymbol, url_, "not softreg's dashboard module");
  module.resolve(kSoftregDashboardStopSymbol, stop_, "not softreg's dashboard module");
  if (std::string_view(version()) != SOFTREG_VERSION) {
    throw Error(fmt::format("{} is softreg {}'s dashboard module, this is softreg {}: rebuild or reinstall",
                            path, version(), SOFTREG_VERSION));
  }
  const std::string runs_text = runs.string();
  const SoftregDashboardOptions options{runs_text.c_str(), host.c_str(), port};
  std::array<char, 1024> error{};
  dashboard_ = start(&options, error.data(), error.size());
  if (!dashboard_) throw Error(error.data());
}

ServedDashboard::~ServedDashboard() {
  stop_(dashboard_);
}

std::string ServedDashboard::url() const {
  std::string url(64, '\0');
  std::size_t length = url_(dashboard_, url.data(), url.size() + 1);
  if (length > url.size()) {
    url.resize(length);
    length = url_(dashboard_, url.data(), url.size() + 1);
  }
  url.resize(length);
  return url;
}

}  // namespace softreg::cli
