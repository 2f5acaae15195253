#include "agent/discovery/proc_fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include "agent/common/unique_fd.h"

namespace threadline::discovery {

Result<std::string> ReadProcFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::FromErrno("open " + path, errno);
  std::string out;
  char buf[16384];
  while (out.size() < max_bytes) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      // ESRCH: the process exited after open(); the caller sees it like a vanished process.
      return Error::FromErrno("read " + path, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (out.size() > max_bytes) out.resize(max_bytes);
  return out;
}

Result<std::string> ReadLink(const std::string& path) {
  // PATH_MAX is the most the kernel returns for a procfs link; one byte more detects truncation.
  std::string buf(4097, '\0');
  ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
  if (n < 0) return Error::FromErrno("readlink " + path, errno);
  if (static_cast<size_t>(n) == buf.size()) return Error{"readlink " + path + ": target too long", ENAMETOOLONG};
  buf.resize(static_cast<size_t>(n));
  return buf;
}

std::string LinkTargetOr(const std::string& path) {
  auto target = ReadLink(path);
  return target.ok() && !target->empty() ? *target : path;
}

std::optional<uint64_t> ParseDecimal(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

std::optional<uint64_t> ParseBracketedInode(std::string_view link, std::string_view prefix) {
  if (link.size() < prefix.size() + 3 || link.substr(0, prefix.size()) != prefix) return std::nullopt;
  link.remove_prefix(prefix.size());
  if (link.substr(0, 2) != ":[" || link.back() != ']') return std::nullopt;
  return ParseDecimal(link.substr(2, link.size() - 3));
}

}  // namespace threadline::discovery
