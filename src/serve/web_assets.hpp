// The dashboard's page, styles, script and chart library, embedded at build time
// (cmake/embed_files.cmake writes the definitions into the build tree).
#pragma once

#include <span>
#include <string_view>

namespace softreg::serve {

struct WebAsset {
  std::string_view url;           // the path it is served at ("/", "/static/app.js")
  std::string_view content_type;  // its Content-Type header
  std::span<const unsigned char> bytes;
};

/// Every embedded file, in the order the build listed them.
std::span<const WebAsset> web_assets();

}  // namespace softreg::serve
