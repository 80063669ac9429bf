// softreg: softmax regression on IDX image datasets (Fashion-MNIST by default).
// Parses the command line, runs one subcommand and turns every error into one line and an exit code.
#include <cstdio>
#include <fmt/format.h>

#include "commands.hpp"
#include "softreg/error.hpp"

int main(int argc, char** argv) {
  using namespace softreg::cli;
  CLI::App app{"softreg: softmax regression on Fashion-MNIST and other IDX image datasets", "softreg"};
  app.set_version_flag("--version", "softreg " SOFTREG_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 success, 1 error (bad data file, failed acceptance check), 2 usage error.\n"
      "Run 'softreg COMMAND --help' for the options of a command.");
  CommandRunner train = add_train_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    fmt::print(stderr, "softreg: error: {} (see 'softreg --help')\n", e.what());
    return kExitUsage;
  }

  try {
    if (app.got_subcommand("train")) return train();
    return kExitUsage;
  } catch (const softreg::UsageError& e) {
    fmt::print(stderr, "softreg: error: {}\n", e.what());
    return kExitUsage;
  } catch (const softreg::Error& e) {
    fmt::print(stderr, "softreg: error: {}\n", e.what());
    return kExitFailure;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "softreg: error: out of memory\n");
    return kExitFailure;
  } catch (const std::exception& e) {
    fmt::print(stderr, "softreg: internal error: {}\n", e.what());
    return kExitFailure;
  }
}
