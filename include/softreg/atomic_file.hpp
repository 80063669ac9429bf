// Writing files so that a reader never sees half of one: a temp file in the same folder, renamed over
// the target when complete.
#pragma once

#include <filesystem>
#include <initializer_list>
#include <string_view>

namespace softreg {

/// Writes `content` to a temp file beside `path`, then renames it over `path`.
void write_file_atomic(const std::filesystem::path& path, std::string_view content);
/// The same for content in several pieces, written one after another.
void write_file_atomic(const std::filesystem::path& path, std::initializer_list<std::string_view> pieces);

}  // namespace softreg
