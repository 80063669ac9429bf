// The C interface of libsoftreg-serve.so: the dashboard's server (serve::Dashboard) as a module that
// the CLI opens only when it serves (softreg serve, train --serve). Linked into the CLI, cpp-httplib's
// library and the OpenSSL it initialises as it loads cost every start of every command about 1.5 ms
// (BENCHMARKS.md, process start). Plain C functions, so that no C++ object or exception crosses between
// the CLI's copy of the library and the module's.
#pragma once

#include <cstddef>

extern "C" {

struct SoftregDashboardOptions {
  const char* runs;  // the folder of run folders
  const char* host;
  int port;  // 0: any free port
};

/// The version the module was built as (SOFTREG_VERSION); the CLI refuses a module of another version.
using SoftregServeVersion = const char* (*)();
/// Starts a dashboard (serve::Dashboard::start) and returns it; on failure returns null and writes a
/// one-line message into error[0, error_size), NUL-terminated.
using SoftregDashboardStart = void* (*)(const SoftregDashboardOptions* options, char* error,
                                        std::size_t error_size);
/// Writes the dashboard's URL into out[0, size), NUL-terminated; returns its length (without the NUL),
/// which may exceed size - 1 (then call again with more room).
using SoftregDashboardUrl = std::size_t (*)(const void* dashboard, char* out, std::size_t size);
/// Stops the dashboard and frees it.
using SoftregDashboardStop = void (*)(void* dashboard);

}  // extern "C"

/// The symbols the module defines, one for each function type above.
inline constexpr const char* kSoftregServeVersionSymbol = "softreg_serve_version";
inline constexpr const char* kSoftregDashboardStartSymbol = "softreg_dashboard_start";
inline constexpr const char* kSoftregDashboardUrlSymbol = "softreg_dashboard_url";
inline constexpr const char* kSoftregDashboardStopSymbol = "softreg_dashboard_stop";
