// softreg serve's rules for what a request may reach, with an oracle: whatever run id and file name a
// request carries (after httplib's percent-decoding), a path that resolve_run / resolve_run_file give back
// lies inside the runs folder, and only a plain file directly in a run folder is served. The rest of
// the input is a metrics.csv, whose JSON rows must parse.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "scratch_path.hpp"
#include "softreg/serve.hpp"

namespace {
namespace fs = std::filesystem;

// A runs folder with the traps a request could aim at: a symlink out of the root, a symlink to a file
// outside, a hidden lock file, a subfolder, and a run alias (latest) that is allowed.
const fs::path& runs_root() {
  static const ScratchPath scratch("softreg-fuzz-serve-");
  static const fs::path root = [] {
    const fs::path& base = scratch.path();
    fs::create_directories(base / "runs" / "run" / "sub");
    fs::create_directories(base / "outside");
    std::ofstream(base / "outside" / "secret.txt") << "secret";
    std::ofstream(base / "runs" / "run" / "metrics.csv") << "epoch,train_loss\n1,0.5\n";
    std::ofstream(base / "runs" / "run" / ".softreg.lock");
    std::ofstream(base / "runs" / "run" / "sub" / "x.png");
    std::error_code ec;
    fs::create_directory_symlink(base / "outside", base / "runs" / "out", ec);
    fs::create_symlink(base / "outside" / "secret.txt", base / "runs" / "run" / "leak.txt", ec);
    fs::create_directory_symlink(base / "runs" / "run", base / "runs" / "latest", ec);
    return fs::canonical(base / "runs");
  }();
  return root;
}

bool strictly_inside(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i)
    if (i == inner.end() || *i != *o) return false;
  return i != inner.end();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t first = input.find('\n');
  const std::string_view id = input.substr(0, first);
  const std::string_view rest =
      first == std::string_view::npos ? std::string_view() : input.substr(first + 1);
  const std::size_t second = rest.find('\n');
  const std::string_view name = rest.substr(0, second);
  const std::string_view csv =
      second == std::string_view::npos ? std::string_view() : rest.substr(second + 1);

  const fs::path& root = runs_root();
  if (const std::optional<fs::path> run = softreg::serve::resolve_run(root, id)) {
    if (!strictly_inside(*run, root) || run->parent_path() != root) std::abort();  // escaped the runs
    if (const std::optional<fs::path> file = softreg::serve::resolve_run_file(*run, name)) {
      std::error_code ec;
      if (file->parent_path() != *run || !fs::is_regular_file(*file, ec) ||
          file->filename().string().front() == '.')
        std::abort();  // not a plain file directly in the run
    }
  }
  if (!nlohmann::json::accept(softreg::serve::csv_rows_json(csv))) std::abort();
  return 0;
}
