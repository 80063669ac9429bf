// Run folders as the dashboard sees them: which runs there are, what state each is in, and the only
// paths a request may reach (a run folder directly under the runs folder, a plain file directly in it).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>

#include "serve/text.hpp"
#include "softreg/atomic_file.hpp"
#include "softreg/serve.hpp"

namespace softreg::serve {
namespace fs = std::filesystem;

namespace {

// One path component a user may name: not empty, not "." or "..", not hidden, no separator or NUL.
bool is_plain_name(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.front() == '.') return false;
  return std::none_of(name.begin(), name.end(), [](char c) { return c == '/' || c == '\\' || c == '\0'; });
}

// Whether canonical `inner` lies strictly below canonical `outer`, component by component (so that
// /runs-other is not "inside" /runs).
bool strictly_inside(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (i == inner.end() || *i != *o) return false;
  }
  return i != inner.end();
}

bool is_file(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

// The number of data rows of a CSV file (lines after the header that are not empty).
std::size_t csv_data_rows(const fs::path& path) {
  const std::string text = read_text(path).value_or("");
  std::size_t lines = 0;
  bool line_has_text = false;
  for (const char c : text) {
    if (c == '\n') {
      lines += line_has_text ? 1 : 0;
      line_has_text = false;
    } else if (c != '\r') {
      line_has_text = true;
    }
  }
  lines += line_has_text ? 1 : 0;
  return lines > 0 ? lines - 1 : 0;
}

}  // namespace

const char* run_state_name(RunState state) {
  switch (state) {
    case RunState::kTraining:
      return "training";
    case RunState::kFinished:
      return "finished";
    case RunState::kStopped:
      return "stopped";
  }
  return "stopped";
}

RunState run_state(const fs::path& run) {
  // summary.json is written by finish(), after the last epoch; a resumed run trains on beneath an old
  // one, so the summary counts only when it covers every row of metrics.csv.
  if (const std::optional<std::string> text = read_text(run / "summary.json")) {
    try {
      // per_epoch lists every epoch trained (epochs_done is the kept one: the best after early stopping).
      const nlohmann::json json = nlohmann::json::parse(*text);
      if (json.is_object() && json.contains("per_epoch") && json["per_epoch"].is_array() &&
          json["per_epoch"].size() == csv_data_rows(run / "metrics.csv"))
        return RunState::kFinished;
    } catch (const nlohmann::json::exception&) {
      // a summary that does not parse says nothing; fall through
    }
  }
  if (FolderLock::is_held(run / ".softreg.lock")) return RunState::kTraining;
  return RunState::kStopped;
}

std::vector<std::string> list_runs(const fs::path& root) {
  std::vector<std::string> ids;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code entry_ec;
    if (!is_plain_name(name) || it->is_symlink(entry_ec) || !it->is_directory(entry_ec)) continue;
    const fs::path& folder = it->path();
    if (is_file(folder / "metrics.csv") || is_file(folder / "summary.json") ||
        is_file(folder / "model.safetensors"))
      ids.push_back(name);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::optional<fs::path> resolve_run(const fs::path& root, std::string_view id) {
  if (!is_plain_name(id)) return std::nullopt;
  std::error_code ec;
  const fs::path canonical_root = fs::canonical(root, ec);
  if (ec) return std::nullopt;
  const fs::path folder = fs::canonical(canonical_root / fs::path(std::string(id)), ec);
  if (ec || !fs::is_directory(folder, ec) || !strictly_inside(folder, canonical_root)) return std::nullopt;
  return folder;
}

std::optional<fs::path> resolve_run_file(const fs::path& run, std::string_view name) {
  if (!is_plain_name(name)) return std::nullopt;
  std::error_code ec;
  const fs::path file = fs::canonical(run / fs::path(std::string(name)), ec);
  if (ec || !fs::is_regular_file(file, ec) || file.parent_path() != run) return std::nullopt;
  return file;
}

std::string csv_rows_json(std::string_view csv) {
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start < csv.size();) {
    std::size_t end = csv.find('\n', start);
    if (end == std::string_view::npos) end = csv.size();
    std::string_view line = csv.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) lines.push_back(line);
    start = end + 1;
  }
  const auto split = [](std::string_view line) {
    std::vector<std::string_view> cells;
    for (std::size_t start = 0;;) {
      const std::size_t comma = line.find(',', start);
      cells.push_back(
          line.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return cells;
  };
  nlohmann::json rows = nlohmann::json::array();
  if (lines.empty()) return json_text(rows);
  const std::vector<std::string_view> header = split(lines.front());
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const std::vector<std::string_view> cells = split(lines[i]);
    if (cells.size() != header.size()) continue;
    nlohmann::json row = nlohmann::json::object();
    for (std::size_t c = 0; c < cells.size(); ++c) {
      double value = 0;
      const auto [end, error] = std::from_chars(cells[c].data(), cells[c].data() + cells[c].size(), value);
      const bool numeric =
          error == std::errc() && end == cells[c].data() + cells[c].size() && std::isfinite(value);
      const std::string key(header[c]);
      if (!numeric) {
        row[key] = std::string(cells[c]);
      } else if (key == "epoch" && value == std::floor(value) && std::fabs(value) <= 9007199254740992.0) {
        // Epochs are whole numbers; one that is not (or beyond 2^53, where a cast could overflow: found
        // by fuzzing) stays a double, and the event stream passes it over.
        row[key] = static_cast<long long>(value);
      } else {
        row[key] = value;
      }
    }
    rows.push_back(std::move(row));
  }
  return json_text(rows);
}

}  // namespace softreg::serve
