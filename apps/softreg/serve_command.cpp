// softreg serve: the dashboard over a folder of run folders, until Ctrl-C (or SIGTERM).
#include <fmt/format.h>
#include <cstdio>

#include "commands.hpp"
#include "common.hpp"
#include "dashboard.hpp"
#include "softreg/error.hpp"

namespace softreg::cli {
namespace {

struct ServeOptions {
  std::string runs = "runs";
  std::string host = "127.0.0.1";
  long long port = 8765;
};

int run_serve(const ServeOptions& options) {
  if (options.port < 0 || options.port > 65535)
    throw UsageError(fmt::format("--port must be from 0 to 65535 (0: any free port), got {}", options.port));
  std::error_code ec;
  if (!std::filesystem::is_directory(options.runs, ec)) {
    throw Error(fmt::format("--runs {}: no such folder (softreg train writes its runs into runs/ by default)",
                            options.runs));
  }
  arm_stop_on_ctrl_c();
  {
    const ServedDashboard dashboard(options.runs, options.host, static_cast<int>(options.port));
    announce_dashboard(stdout, dashboard.url(), options.host, options.runs);
    wait_for_stop_request();
  }  // stopped here
  return kExitOk;
}

}  // namespace

void announce_dashboard(std::FILE* out, const std::string& url, const std::string& host,
                        const std::string& runs) {
  fmt::print(out, "dashboard: {} (runs in {}; Ctrl-C to stop)\n", url, runs);
  std::fflush(out);
  if (host != "127.0.0.1" && host != "localhost" && host != "::1") {
    fmt::print(stderr,
               "softreg: warning: serving on {}: anyone who can reach this address can see the runs and "
               "use their models\n",
               host);
  }
}

CommandRunner add_serve_command(CLI::App& app) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "A dashboard in the browser: live curves, runs compared, confusion matrix, draw to predict");
  cmd->add_option("--runs", options->runs, "Folder of run folders")->capture_default_str();
  cmd->add_option("--host", options->host, "Address to listen on (other than 127.0.0.1: reachable by others)")
      ->capture_default_str();
  cmd->add_option("--port", options->port, "Port (0: any free port, printed)")->capture_default_str();
  return [options] { return run_serve(*options); };
}

}  // namespace softreg::cli
