#include "agent/protocols/http1/detect.h"

#include <string_view>

#include "agent/protocols/http1/syntax.h"

namespace threadline::http1 {

namespace {
std::string_view AsView(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
}  // namespace

bool LooksLikeHttp1Request(std::span<const uint8_t> first_bytes) {
  std::string_view s = AsView(first_bytes);
  size_t nl = s.find('\n');
  if (nl != std::string_view::npos) return syntax::IsRequestLine(syntax::StripCr(s.substr(0, nl)));
  // Incomplete line: only a known method is enough to commit (an extension method needs its
  // version to be seen), and PRI is HTTP/2's preface, never an HTTP/1 request here.
  size_t sp = s.find(' ');
  if (sp == std::string_view::npos || !syntax::IsKnownMethod(s.substr(0, sp))) return false;
  return syntax::PlausibleRequestPrefix(s);
}

bool LooksLikeHttp1Response(std::span<const uint8_t> first_bytes) {
  std::string_view s = AsView(first_bytes);
  if (s.size() < 12) return false;
  return syntax::PlausibleResponsePrefix(s);
}

}  // namespace threadline::http1
