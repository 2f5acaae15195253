#include "symbolizer/proc_maps.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

namespace threadline::symbolizer {

namespace {

std::string_view NextField(std::string_view& line) {
  size_t start = line.find_first_not_of(' ');
  if (start == std::string_view::npos) {
    line = {};
    return {};
  }
  line.remove_prefix(start);
  size_t end = line.find(' ');
  std::string_view field = line.substr(0, end);
  line.remove_prefix(end == std::string_view::npos ? line.size() : end);
  return field;
}

bool ParseHex(std::string_view s, uint64_t& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

std::vector<MappedFile> ParseMaps(std::string_view text, const std::string& proc_root, uint32_t pid) {
  std::vector<MappedFile> out;
  const std::string root = proc_root + "/" + std::to_string(pid) + "/root";
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    // address perms offset dev inode path
    NextField(line);
    std::string_view perms = NextField(line);
    NextField(line);
    std::string_view dev = NextField(line);
    std::string_view inode_s = NextField(line);
    size_t p = line.find_first_not_of(' ');
    if (p == std::string_view::npos) continue;
    std::string_view path = line.substr(p);
    if (path.empty() || path[0] != '/') continue;  // [heap], [vdso], anon
    if (path.ends_with(" (deleted)")) continue;    // replaced on disk: that path is another file
    size_t colon = dev.find(':');
    uint64_t major_n = 0, minor_n = 0, inode = 0;
    if (colon == std::string_view::npos || !ParseHex(dev.substr(0, colon), major_n) ||
        !ParseHex(dev.substr(colon + 1), minor_n))
      continue;
    auto r = std::from_chars(inode_s.data(), inode_s.data() + inode_s.size(), inode);
    if (r.ec != std::errc() || inode == 0) continue;
    FileKey key{makedev(major_n, minor_n), inode};
    const bool exec = perms.size() >= 3 && perms[2] == 'x';
    auto it = std::find_if(out.begin(), out.end(), [&](const MappedFile& m) { return m.key == key; });
    if (it != out.end()) {
      it->executable = it->executable || exec;
      continue;
    }
    out.push_back(MappedFile{key, std::string(path), root + std::string(path), exec});
  }
  return out;
}

std::optional<FileKey> FileKeyOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileKey{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

std::vector<MappedFile> MappedFiles(const std::string& proc_root, uint32_t pid) {
  std::ifstream in(proc_root + "/" + std::to_string(pid) + "/maps");
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseMaps(ss.str(), proc_root, pid);
}

}  // namespace threadline::symbolizer
