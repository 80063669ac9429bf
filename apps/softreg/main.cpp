// softreg: softmax regression on IDX image datasets (Fashion-MNIST by default).
// Parses the command line, runs one subcommand and turns every error into one line and an exit code.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <string_view>

#include "commands.hpp"
#include "softreg/error.hpp"

int main(int argc, char** argv) {
  using namespace softreg::cli;
  CLI::App app{
      "softreg: softmax regression on Fashion-MNIST, other IDX sets, image folders and NPY or CSV features",
      "softreg"};
  app.set_version_flag("--version", "softreg " SOFTREG_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 success, 1 error (bad data or model file; a failed acceptance check, on Fashion-MNIST\n"
      "or with --check), 2 usage error, 130 training interrupted by Ctrl-C (143 by SIGTERM; the run\n"
      "folder holds a checkpoint to --resume).\n"
      "Run 'softreg COMMAND --help' for the options of a command.");
  // Only the command named first is built when there is one: building every command's options took
  // a quarter of each start (train: 2.2 -> 1.8 ms, BENCHMARKS.md). Help, --version and mistakes
  // (anything else first) get them all.
  struct Command {
    const char* name;
    CommandRunner (*add)(CLI::App&);
  };
  constexpr std::array kCommands{Command{"train", add_train_command}, Command{"tune", add_tune_command},
                                 Command{"eval", add_eval_command},   Command{"predict", add_predict_command},
                                 Command{"plot", add_plot_command},   Command{"bench", add_bench_command},
                                 Command{"data", add_data_command},   Command{"serve", add_serve_command}};
  const std::string_view first = argc > 1 ? argv[1] : "";
  const bool named =
      std::any_of(kCommands.begin(), kCommands.end(), [&](const Command& c) { return first == c.name; });
  std::array<CommandRunner, kCommands.size()> runners;
  for (std::size_t i = 0; i < kCommands.size(); ++i) {
    if (!named || first == kCommands[i].name) runners[i] = kCommands[i].add(app);
  }

  try {
    // CLI11 would call a misspelt command "A subcommand is required"; name it instead.
    if (argc > 1 && argv[1][0] != '-' && !named) {
      std::string known;
      for (const Command& c : kCommands)
        known += (known.empty() ? "" : ", ") + std::string(c.name);
      fmt::print(stderr, "softreg: error: unknown command '{}' (commands: {})\n", argv[1], known);
      return kExitUsage;
    }
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    const auto parsed = app.get_subcommands();
    const std::string help =
        parsed.empty() ? "softreg --help" : "softreg " + parsed.front()->get_name() + " --help";
    fmt::print(stderr, "softreg: error: {} (see '{}')\n", e.what(), help);
    return kExitUsage;
  }

  try {
    for (std::size_t i = 0; i < kCommands.size(); ++i) {
      if (runners[i] && app.got_subcommand(kCommands[i].name)) return runners[i]();
    }
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
