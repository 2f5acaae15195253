#include "agent/common/text.h"

#include <cctype>

namespace threadline {

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> PercentDecode(std::string_view s, std::string_view variable) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) {
      return Error{std::string(variable) + ": truncated percent-escape in \"" + std::string(s) + "\""};
    }
    const int hi = HexValue(s[i + 1]);
    const int lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) {
      return Error{std::string(variable) + ": bad percent-escape in \"" + std::string(s) + "\""};
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

}  // namespace

std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string_view> ListMembers(std::string_view text) {
  std::vector<std::string_view> members;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view member = TrimSpace(text.substr(pos, comma - pos));
    pos = comma + 1;
    if (!member.empty()) members.push_back(member);
  }
  return members;
}

Result<KeyValueList> ParseKeyValueList(std::string_view text, std::string_view variable) {
  KeyValueList list;
  for (std::string_view member : ListMembers(text)) {
    member = TrimSpace(member.substr(0, member.find(';')));  // ";property" parts mean nothing here
    const size_t eq = member.find('=');
    if (eq == std::string_view::npos) {
      return Error{std::string(variable) + ": \"" + std::string(member) + "\" is not key=value"};
    }
    std::string_view key = TrimSpace(member.substr(0, eq));
    if (key.empty()) {
      return Error{std::string(variable) + ": empty key in \"" + std::string(member) + "\""};
    }
    ASSIGN_OR_RETURN(std::string k, PercentDecode(key, variable));
    ASSIGN_OR_RETURN(std::string v, PercentDecode(TrimSpace(member.substr(eq + 1)), variable));
    list.emplace_back(std::move(k), std::move(v));
  }
  return list;
}

}  // namespace threadline
