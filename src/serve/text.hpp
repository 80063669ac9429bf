// Small helpers the server's sources share: a run folder's text files, and JSON text that never throws.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace softreg::serve {

/// The whole file as text, or nullopt when it cannot be opened (a run folder's files come and go).
inline std::optional<std::string> read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// JSON text in which invalid UTF-8 (file and class names, CSV cells: whatever bytes a folder holds) is
/// replaced by U+FFFD instead of throwing (found by fuzzing).
inline std::string json_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace softreg::serve
