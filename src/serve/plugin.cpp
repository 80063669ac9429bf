// libsoftreg-serve.so: serve::Dashboard behind the C functions of plugin_abi.h.
#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <string_view>

#include "serve/plugin_abi.h"
#include "softreg/serve.hpp"

namespace {

// Copies as much of `text` as fits, NUL-terminated; returns the length of all of it.
std::size_t copy_out(std::string_view text, char* out, std::size_t size) {
  if (size > 0) {
    const std::size_t n = std::min(text.size(), size - 1);
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
  }
  return text.size();
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) const char* softreg_serve_version() {
  return SOFTREG_VERSION;
}

__attribute__((visibility("default"))) void* softreg_dashboard_start(const SoftregDashboardOptions* options,
                                                                     char* error, std::size_t error_size) {
  try {
    auto dashboard = std::make_unique<softreg::serve::Dashboard>(
        softreg::serve::ServerOptions{.runs = options->runs, .host = options->host, .port = options->port});
    dashboard->start();
    return dashboard.release();
  } catch (const std::exception& e) {
    copy_out(e.what(), error, error_size);
  } catch (...) {
    copy_out("the dashboard failed to start", error, error_size);
  }
  return nullptr;
}

__attribute__((visibility("default"))) std::size_t softreg_dashboard_url(const void* dashboard, char* out,
                                                                         std::size_t size) {
  try {
    return copy_out(static_cast<const softreg::serve::Dashboard*>(dashboard)->url(), out, size);
  } catch (...) {
    return copy_out("", out, size);
  }
}

__attribute__((visibility("default"))) void softreg_dashboard_stop(void* dashboard) {
  delete static_cast<softreg::serve::Dashboard*>(dashboard);  // the destructor stops it
}

}  // extern "C"
