// The web view's files (agent/ui/web/), compiled into the binary at build time by
// cmake/embed_assets.cmake, so the page works offline and needs nothing next to the binary.
#pragma once

#include <span>
#include <string_view>

namespace threadline {

struct UiAsset {
  std::string_view path;          // "/app.js"
  std::string_view content_type;  // "text/javascript; charset=utf-8"
  std::string_view body;
};

// Every embedded file (defined in the generated ui_assets.cpp).
std::span<const UiAsset> UiAssets();

}  // namespace threadline
