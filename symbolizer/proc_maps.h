// The files a process maps (/proc/<pid>/maps), as the places to look for uprobe sites.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace threadline::symbolizer {

// Identity of a file across processes and mount namespaces: what a uprobe is really attached to
// (the kernel keys uprobes by inode).
struct FileKey {
  uint64_t dev = 0;  // as /proc/<pid>/maps prints it: (major << 8 | minor) is not used, we
                     // keep makedev(major, minor) from the "maj:min" field
  uint64_t inode = 0;
  auto operator<=>(const FileKey&) const = default;
};

// The key of the file at `path` (stat follows links: /proc/<pid>/exe is the executable itself);
// nullopt when it cannot be stat'ed.
std::optional<FileKey> FileKeyOf(const std::string& path);

struct MappedFile {
  FileKey key;
  std::string path;       // as the process sees it (inside its mount namespace)
  std::string open_path;  // the same file from the agent: <proc>/<pid>/root<path>
  bool executable = false;  // mapped with x permission at least once
};

// One entry per distinct file (device + inode) mapped from a real path; anonymous and special
// mappings ([heap], [vdso], memfd:, deleted files) are left out. Empty if the process is gone.
std::vector<MappedFile> MappedFiles(const std::string& proc_root, uint32_t pid);

// Parses the text of a maps file (exposed for tests).
std::vector<MappedFile> ParseMaps(std::string_view text, const std::string& proc_root, uint32_t pid);

}  // namespace threadline::symbolizer
