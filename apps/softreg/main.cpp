// softreg: softmax regression on IDX image datasets (Fashion-MNIST by default).
// Parses the command line, runs one subcommand and turns every error into one line and an exit code.
#include <fmt/format.h>
#include <cstdio>
#include <string>

#include "commands.hpp"
#include "softreg/error.hpp"

int main(int argc, char** argv) {
  using namespace softreg::cli;
  CLI::App app{"softreg: softmax regression on Fashion-MNIST and other IDX image datasets", "softreg"};
  app.set_version_flag("--version", "softreg " SOFTREG_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 success, 1 error (bad data or model file, failed acceptance check), 2 usage error,\n"
      "130 training interrupted by Ctrl-C (the run folder holds a checkpoint to --resume).\n"
      "Run 'softreg COMMAND --help' for the options of a command.");
  CommandRunner train = add_train_command(app);
  CommandRunner tune = add_tune_command(app);
  CommandRunner eval = add_eval_command(app);
  CommandRunner predict = add_predict_command(app);
  CommandRunner plot = add_plot_command(app);
  CommandRunner bench = add_bench_command(app);
  CommandRunner data = add_data_command(app);
  CommandRunner serve = add_serve_command(app);

  try {
    // CLI11 would call a misspelt command "A subcommand is required"; name it instead.
    std::string known;
    bool is_known = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      is_known = is_known || (argc > 1 && sub->get_name() == argv[1]);
    }
    if (argc > 1 && argv[1][0] != '-' && !is_known) {
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
    if (app.got_subcommand("train")) return train();
    if (app.got_subcommand("tune")) return tune();
    if (app.got_subcommand("eval")) return eval();
    if (app.got_subcommand("predict")) return predict();
    if (app.got_subcommand("plot")) return plot();
    if (app.got_subcommand("bench")) return bench();
    if (app.got_subcommand("data")) return data();
    if (app.got_subcommand("serve")) return serve();
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
