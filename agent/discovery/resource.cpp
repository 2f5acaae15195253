#include "agent/discovery/resource.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>

#include "agent/common/text.h"
#include "agent/discovery/proc_fs.h"
#include "agent/spans/redaction.h"

namespace threadline {

namespace {

std::string PidDir(const std::string& proc_root, uint32_t pid) {
  return proc_root + "/" + std::to_string(pid);
}

std::string_view Basename(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string_view Dirname(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> StrictPercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size() || HexValue(s[i + 1]) < 0 || HexValue(s[i + 2]) < 0) return std::nullopt;
    out += static_cast<char>(HexValue(s[i + 1]) << 4 | HexValue(s[i + 2]));
    i += 2;
  }
  return out;
}

// --- SHA-1 (FIPS 180-4), only for UUIDv5: not used for anything that needs to be secure. ---
class Sha1 {
 public:
  void Update(std::string_view data) {
    for (char c : data) {
      block_[block_len_++] = static_cast<uint8_t>(c);
      if (block_len_ == 64) Compress();
    }
    total_bits_ += static_cast<uint64_t>(data.size()) * 8;
  }
  std::array<uint8_t, 20> Finish() {
    uint64_t bits = total_bits_;
    block_[block_len_++] = 0x80;
    if (block_len_ > 56) {
      while (block_len_ < 64) block_[block_len_++] = 0;
      Compress();
    }
    while (block_len_ < 56) block_[block_len_++] = 0;
    for (int i = 7; i >= 0; --i) block_[block_len_++] = static_cast<uint8_t>(bits >> (8 * i));
    Compress();
    std::array<uint8_t, 20> out{};
    for (size_t i = 0; i < 5; ++i)
      for (size_t j = 0; j < 4; ++j) out[4 * i + j] = static_cast<uint8_t>(h_[i] >> (24 - 8 * j));
    return out;
  }

 private:
  static uint32_t Rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
  void Compress() {
    uint32_t w[80];
    for (size_t i = 0; i < 16; ++i)
      w[i] = uint32_t{block_[4 * i]} << 24 | uint32_t{block_[4 * i + 1]} << 16 |
             uint32_t{block_[4 * i + 2]} << 8 | uint32_t{block_[4 * i + 3]};
    for (size_t i = 16; i < 80; ++i) w[i] = Rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4];
    for (size_t i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5a827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ed9eba1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8f1bbcdc;
      } else {
        f = b ^ c ^ d;
        k = 0xca62c1d6;
      }
      uint32_t t = Rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = Rotl(b, 30);
      b = a;
      a = t;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    block_len_ = 0;
  }

  std::array<uint32_t, 5> h_ = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  std::array<uint8_t, 64> block_{};
  size_t block_len_ = 0;
  uint64_t total_bits_ = 0;
};

// How to find the program an interpreter runs, as data: flags that take the next argument,
// flags that run inline code (no program name to find), flags whose next argument names the
// program.
enum class Interpreter { kNone, kPython, kNode, kJava, kRuby, kPerl, kPhp };

struct InterpreterRules {
  Interpreter kind;
  std::initializer_list<std::string_view> value_flags;
  std::initializer_list<std::string_view> code_flags;
  std::initializer_list<std::string_view> extensions;
};

const InterpreterRules kInterpreterRules[] = {
    {Interpreter::kPython, {"-W", "-X", "--check-hash-based-pycs"}, {"-c"}, {".py", ".pyc", ".pyz"}},
    {Interpreter::kNode,
     {"-r", "--require", "--import", "--loader", "--experimental-loader", "-C", "--conditions",
      "--title", "--env-file", "--inspect-port"},
     {"-e", "--eval", "-p", "--print"},
     {".js", ".mjs", ".cjs", ".ts"}},
    {Interpreter::kJava,
     {"-cp", "-classpath", "--class-path", "-p", "--module-path", "--upgrade-module-path",
      "--add-modules", "--limit-modules", "--add-exports", "--add-opens", "--add-reads",
      "--patch-module", "--enable-native-access"},
     {},
     {".jar"}},
    {Interpreter::kRuby, {"-I", "-r", "-C", "-E"}, {"-e"}, {".rb"}},
    {Interpreter::kPerl, {"-I", "-m", "-M"}, {"-e", "-E"}, {".pl", ".pm"}},
    {Interpreter::kPhp, {"-c", "-d", "-z"}, {"-r"}, {".php"}},
};

// "python3", "python3.12", "ruby3.2": a name followed by a version.
bool NameWithVersion(std::string_view exe, std::string_view name) {
  if (!exe.starts_with(name)) return false;
  std::string_view rest = exe.substr(name.size());
  return std::all_of(rest.begin(), rest.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

Interpreter ClassifyInterpreter(std::string_view exe) {
  if (NameWithVersion(exe, "python") || NameWithVersion(exe, "pypy")) return Interpreter::kPython;
  if (exe == "node" || exe == "nodejs") return Interpreter::kNode;
  if (exe == "java") return Interpreter::kJava;
  if (NameWithVersion(exe, "ruby")) return Interpreter::kRuby;
  if (NameWithVersion(exe, "perl")) return Interpreter::kPerl;
  if (NameWithVersion(exe, "php")) return Interpreter::kPhp;
  return Interpreter::kNone;
}

bool In(std::initializer_list<std::string_view> set, std::string_view s) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// A script path -> its name: basename without a known extension; "index"/"__main__" are named
// after their directory, which is where the project's name is.
std::string ScriptName(std::string_view path, std::initializer_list<std::string_view> extensions) {
  std::string_view base = Basename(path);
  for (std::string_view ext : extensions) {
    if (base.size() > ext.size() && base.ends_with(ext)) {
      base.remove_suffix(ext.size());
      break;
    }
  }
  if (base == "index" || base == "__main__") {
    std::string_view dir = Basename(Dirname(path));
    if (!dir.empty() && dir != "." && dir != "..") return std::string(dir);
  }
  return std::string(base);
}

// The program an interpreter was asked to run, or "" when there is none to name.
std::string InterpretedProgramName(const InterpreterRules& rules, const std::vector<std::string>& argv) {
  for (size_t i = 1; i < argv.size(); ++i) {
    std::string_view a = argv[i];
    if (a == "--") return i + 1 < argv.size() ? ScriptName(argv[i + 1], rules.extensions) : "";
    if (In(rules.code_flags, a)) return "";
    if (rules.kind == Interpreter::kPython) {
      if (a == "-m") return i + 1 < argv.size() ? argv[i + 1] : "";
      if (a.starts_with("-m") && !a.starts_with("--")) return std::string(a.substr(2));
      if (a.starts_with("-c") && !a.starts_with("--")) return "";
    }
    if (rules.kind == Interpreter::kJava) {
      if (a == "-jar") return i + 1 < argv.size() ? ScriptName(argv[i + 1], rules.extensions) : "";
      if (a == "-m" || a == "--module" || a.starts_with("--module=")) {
        std::string_view mod = a.starts_with("--module=") ? a.substr(9)
                               : i + 1 < argv.size()     ? std::string_view(argv[i + 1])
                                                         : std::string_view();
        return std::string(mod.substr(0, mod.find('/')));
      }
    }
    if (rules.kind == Interpreter::kPhp && a == "-f")
      return i + 1 < argv.size() ? ScriptName(argv[i + 1], rules.extensions) : "";
    if (In(rules.value_flags, a)) {
      ++i;
      continue;
    }
    if (a.starts_with('-')) continue;  // "-" alone (stdin) has no name either; skipping is fine
    if (rules.kind == Interpreter::kJava) {
      // A main class: its simple name is what people call the service.
      size_t dot = a.rfind('.');
      return std::string(dot == std::string_view::npos ? a : a.substr(dot + 1));
    }
    return ScriptName(a, rules.extensions);
  }
  return "";
}

std::string JoinArgs(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

void SetAttribute(Attributes& attrs, AttributeKey key, AttributeValue value) {
  for (auto& a : attrs) {
    if (a.key == key) {
      a.value = std::move(value);
      return;
    }
  }
  attrs.push_back({std::move(key), std::move(value)});
}

void AddDistro(Attributes& attrs) {
  attrs.push_back({"telemetry.distro.name", std::string(kDistroName)});
  attrs.push_back({"telemetry.distro.version", std::string(kScopeVersion)});
}

// environ read up to a bound may end inside a variable; a cut value would be wrong, so it goes.
std::string_view WholeEntries(std::string_view environ, bool truncated) {
  if (!truncated) return environ;
  size_t last_nul = environ.rfind('\0');
  return last_nul == std::string_view::npos ? std::string_view() : environ.substr(0, last_nul + 1);
}

}  // namespace

HostIdentity HostIdentity::Read(const std::string& proc_root, std::string_view host_name_override) {
  HostIdentity id;
  if (!host_name_override.empty()) {
    id.host_name = std::string(host_name_override);
  } else if (auto h = discovery::ReadProcFile(proc_root + "/sys/kernel/hostname", 256);
             h.ok() && !TrimSpace(*h).empty()) {
    id.host_name = std::string(TrimSpace(*h));
  } else {
    char buf[256] = {};
    if (::gethostname(buf, sizeof(buf) - 1) == 0) id.host_name = buf;
  }
  if (auto b = discovery::ReadProcFile(proc_root + "/sys/kernel/random/boot_id", 128); b.ok())
    id.boot_id = std::string(TrimSpace(*b));
  return id;
}

namespace discovery {

std::optional<std::string_view> EnvironValue(std::string_view environ, std::string_view name) {
  size_t start = 0;
  while (start < environ.size()) {
    size_t end = environ.find('\0', start);
    if (end == std::string_view::npos) end = environ.size();
    std::string_view entry = environ.substr(start, end - start);
    if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=')
      return entry.substr(name.size() + 1);
    start = end + 1;
  }
  return std::nullopt;
}

Result<Attributes> ParseResourceAttributes(std::string_view value) {
  Attributes attrs;
  // Not ParseKeyValueList: a ';' is part of a value here, and any bad member fails the whole
  // variable (the SDK specification), with its own error text.
  for (std::string_view member : ListMembers(value)) {
    size_t eq = member.find('=');
    if (eq == std::string_view::npos)
      return Error{"OTEL_RESOURCE_ATTRIBUTES: no '=' in \"" + std::string(member) + "\"", EINVAL};
    auto key = StrictPercentDecode(TrimSpace(member.substr(0, eq)));
    auto val = StrictPercentDecode(TrimSpace(member.substr(eq + 1)));
    if (!key || key->empty() || !val)
      return Error{"OTEL_RESOURCE_ATTRIBUTES: bad member \"" + std::string(member) + "\"", EINVAL};
    SetAttribute(attrs, AttributeKey(std::move(*key)), std::move(*val));
  }
  return attrs;
}

std::string ServiceNameFromCommand(std::string_view exe_path, const std::vector<std::string>& argv,
                                   std::string_view comm) {
  std::string_view exe = Basename(exe_path);
  if (exe.empty() && !argv.empty()) exe = Basename(argv[0]);
  Interpreter kind = ClassifyInterpreter(exe);
  if (kind != Interpreter::kNone) {
    for (const auto& rules : kInterpreterRules) {
      if (rules.kind != kind) continue;
      std::string name = InterpretedProgramName(rules, argv);
      if (!name.empty()) return name;
    }
  }
  if (!exe.empty()) return std::string(exe);
  if (!comm.empty()) return std::string(comm);
  return "unknown_service";
}

std::string UuidV5(const std::array<uint8_t, 16>& namespace_id, std::string_view name) {
  Sha1 sha;
  sha.Update(std::string_view(reinterpret_cast<const char*>(namespace_id.data()), namespace_id.size()));
  sha.Update(name);
  std::array<uint8_t, 20> h = sha.Finish();
  h[6] = static_cast<uint8_t>((h[6] & 0x0f) | 0x50);  // version 5
  h[8] = static_cast<uint8_t>((h[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kDigits[h[i] >> 4];
    out += kDigits[h[i] & 0xf];
  }
  return out;
}

std::string ServiceInstanceId(const HostIdentity& host, uint32_t pid, uint64_t start_time_ticks) {
  // boot_id is random per boot and per machine, so with (pid, start time) it names one process
  // across the fleet and across reboots; the host name stands in when boot_id is unreadable.
  const std::string& machine = host.boot_id.empty() ? host.host_name : host.boot_id;
  return UuidV5(kServiceInstanceNamespace,
                machine + ":" + std::to_string(pid) + ":" + std::to_string(start_time_ticks));
}

}  // namespace discovery

std::shared_ptr<const Resource> BuildResource(const ProcessInfo& info, std::string_view environ,
                                              const HostIdentity& host, const ContainerCgroup* container,
                                              const K8sContainerMetadata* k8s) {
  Attributes user;
  if (auto raw = discovery::EnvironValue(environ, "OTEL_RESOURCE_ATTRIBUTES")) {
    // A malformed value is dropped whole (SDK spec); the process still gets a detected resource.
    if (auto parsed = discovery::ParseResourceAttributes(*raw); parsed.ok()) user = std::move(parsed).value();
  }

  std::string service_name;
  if (auto env = discovery::EnvironValue(environ, "OTEL_SERVICE_NAME"); env && !TrimSpace(*env).empty()) {
    service_name = std::string(TrimSpace(*env));
  } else if (const auto* v = FindAttribute(user, "service.name");
             v && std::holds_alternative<std::string>(*v) && !std::get<std::string>(*v).empty()) {
    service_name = std::get<std::string>(*v);
  } else if (const K8sWorkload* w = k8s && k8s->pod ? k8s->pod->TopWorkload() : nullptr) {
    // In a pod, the command is usually a generic runtime ("python", "java"); the workload is
    // what the team calls the service.
    service_name = w->name;
  } else if (k8s && !k8s->container_name.empty()) {
    service_name = k8s->container_name;
  } else {
    service_name = discovery::ServiceNameFromCommand(info.exe_path.empty() ? info.exe_name : info.exe_path,
                                                     info.cmdline, info.comm);
  }

  auto resource = std::make_shared<Resource>();
  Attributes& attrs = resource->attributes;
  attrs.push_back({"service.name", std::move(service_name)});
  attrs.push_back({"service.instance.id", discovery::ServiceInstanceId(host, info.pid, info.start_time_ticks)});
  attrs.push_back({"host.name", host.host_name});
  attrs.push_back({"process.pid", static_cast<int64_t>(info.pid)});
  attrs.push_back({"process.parent_pid", static_cast<int64_t>(info.ppid)});
  std::string_view exe_name = Basename(info.exe_path);
  if (exe_name.empty()) exe_name = info.exe_name;
  attrs.push_back({"process.executable.name", std::string(exe_name.empty() ? info.comm : exe_name)});
  if (!info.exe_path.empty()) attrs.push_back({"process.executable.path", info.exe_path});
  if (!info.cmdline.empty())
    attrs.push_back({"process.command_line", JoinArgs(RedactCommandLine(info.cmdline))});
  AddDistro(attrs);
  if (container) attrs.push_back({"container.id", container->container_id});
  if (k8s)
    for (auto& [key, value] : k8s::ResourceAttributes(*k8s)) attrs.push_back({AttributeKey(std::move(key)), std::move(value)});

  for (auto& a : user) {
    const std::string_view key = a.key.view();
    if (key == "service.name" || key.starts_with("process.") || key.starts_with("telemetry."))
      continue;
    SetAttribute(attrs, std::move(a.key), std::move(a.value));
  }
  return resource;
}

ProcessInfo ProcessInfoFromExec(const ExecSnapshot& exec) {
  ProcessInfo info;
  info.pid = exec.pid;
  info.ppid = exec.ppid;
  info.comm = std::string(exec.comm);
  info.start_time_ticks = exec.start_time_ticks;
  info.cmdline = discovery::SplitCmdline(exec.args);
  if (!exec.exe_name.empty() && exec.filename.starts_with('/') && Basename(exec.filename) == exec.exe_name)
    info.exe_path = std::string(exec.filename);
  else
    info.exe_name = std::string(exec.exe_name);
  return info;
}

std::shared_ptr<const Resource> MinimalResource(uint32_t pid, std::string_view comm,
                                                const HostIdentity& host) {
  auto resource = std::make_shared<Resource>();
  Attributes& attrs = resource->attributes;
  attrs.push_back({"service.name", "unknown_service:" + (comm.empty() ? std::to_string(pid) : std::string(comm))});
  attrs.push_back({"host.name", host.host_name});
  attrs.push_back({"process.pid", static_cast<int64_t>(pid)});
  AddDistro(attrs);
  return resource;
}

ResourceCache::ResourceCache(ResourceCacheOptions options, MetricsRegistry& metrics)
    : options_([&] {
        options.capacity = std::max<size_t>(options.capacity, 1);
        return std::move(options);
      }()),
      host_(HostIdentity::Read(options_.proc_root, options_.host_name)),
      builds_(metrics.GetCounter("threadline_resource_builds_total", {},
                                 "Process resources built from /proc on a resource-cache miss")),
      evictions_(metrics.GetCounter("threadline_resource_cache_evictions_total", {},
                                    "Resource-cache entries evicted because the cache was full")),
      environ_unreadable_(metrics.GetCounter(
          "threadline_resource_environ_unreadable_total", {},
          "Processes whose /proc/<pid>/environ could not be read (needs ptrace-read access); "
          "named from their command instead of OTEL_SERVICE_NAME")),
      k8s_misses_(metrics.GetCounter(
          "threadline_k8s_metadata_misses_total", {},
          "Resources of containerised processes built before the Kubernetes metadata of their "
          "container was known (built without k8s.* attributes, upgraded when it arrives)")),
      k8s_upgrades_(metrics.GetCounter("threadline_k8s_resource_upgrades_total", {},
                                       "Resources rebuilt with Kubernetes metadata that arrived after them")),
      from_exec_(metrics.GetCounter(
          "threadline_resource_from_exec_total", {},
          "Resources built from the exec event because the process was gone before /proc could be read "
          "(named by its command; OTEL_* variables and container attributes unknown)")) {}

ResourceCache::Built ResourceCache::Build(const ProcessInfo& info) {
  builds_.Add();
  std::string environ;
  auto raw = discovery::ReadProcFile(PidDir(options_.proc_root, info.pid) + "/environ", kMaxEnvironBytes);
  if (raw.ok()) {
    environ = std::move(raw).value();
    environ.resize(WholeEntries(environ, environ.size() >= kMaxEnvironBytes).size());
  } else {
    // Not logged: it happens for every process of another user when not root, and the count
    // says it all.
    environ_unreadable_.Add();
  }
  // No cgroup file (gone, or a fake /proc in tests): no container attributes, nothing to wait for.
  std::optional<ContainerCgroup> container;
  if (auto cg = ReadContainerCgroup(info.pid, options_.proc_root); cg.ok()) container = std::move(*cg);
  if (!container) return Built{BuildResource(info, environ, host_), nullptr};
  if (!options_.kubernetes) return Built{BuildResource(info, environ, host_, &*container), nullptr};

  const uint64_t generation = options_.kubernetes->generation();
  if (auto meta = options_.kubernetes->Lookup(container->container_id))
    return Built{BuildResource(info, environ, host_, &*container, &*meta), nullptr};
  k8s_misses_.Add();
  auto pending = std::make_shared<Entry::PendingK8s>();
  pending->info = info;
  for (const char* name : {"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}) {
    if (auto v = discovery::EnvironValue(environ, name)) {
      pending->environ += name;
      pending->environ += '=';
      pending->environ += *v;
      pending->environ += '\0';
    }
  }
  pending->container = *container;
  pending->source_generation = generation;
  return Built{BuildResource(info, environ, host_, &pending->container), std::move(pending)};
}

void ResourceCache::UpgradeIfKnownLocked(Entry& e) {
  if (!e.pending_k8s || !options_.kubernetes) return;
  const uint64_t generation = options_.kubernetes->generation();
  if (generation == e.pending_k8s->source_generation) return;  // nothing new: one atomic load
  e.pending_k8s->source_generation = generation;
  auto meta = options_.kubernetes->Lookup(e.pending_k8s->container.container_id);
  if (!meta) return;
  const auto& p = *e.pending_k8s;
  e.resource = BuildResource(p.info, p.environ, host_, &p.container, &*meta);
  e.pending_k8s.reset();
  k8s_upgrades_.Add();
}

std::shared_ptr<const Resource> ResourceCache::Insert(uint32_t pid, uint64_t start_time_ticks, Built built,
                                                      uint64_t epoch_before) {
  std::shared_ptr<const Resource> resource = std::move(built.resource);
  std::lock_guard lock(mu_);
  // An exec or exit notified while /proc was being read may have come after the read; caching
  // it could pin the old program's resource to the pid.
  if (invalidation_epoch_ != epoch_before) return resource;
  auto it = entries_.find(pid);
  if (it == entries_.end()) {
    lru_.push_front(pid);
    it = entries_.emplace(pid, Entry{}).first;
    it->second.lru_pos = lru_.begin();
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
  }
  Entry& e = it->second;
  e.start_time_ticks = start_time_ticks;
  e.resource = resource;
  e.pending_k8s = std::move(built.pending_k8s);
  e.verified_at = Clock::now();
  // A minimal resource stands for a pid we could not read: recheck it every time so that the
  // next process to get the pid is read properly.
  e.exited = start_time_ticks == 0;
  while (entries_.size() > options_.capacity) {
    entries_.erase(lru_.back());
    lru_.pop_back();
    evictions_.Add();
  }
  return resource;
}

std::shared_ptr<const Resource> ResourceCache::Get(uint32_t pid) {
  const auto now = Clock::now();
  std::shared_ptr<const Resource> cached;
  uint64_t cached_start = 0;
  uint64_t epoch_before;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(pid);
    if (it != entries_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
      Entry& e = it->second;
      UpgradeIfKnownLocked(e);
      if (!e.exited && now - e.verified_at < options_.revalidate_after) return e.resource;
      cached = e.resource;
      cached_start = e.start_time_ticks;
    }
    epoch_before = invalidation_epoch_;
  }

  // Only stat to start with: it tells whether the cached entry still names the process.
  auto stat = discovery::ReadProcFile(PidDir(options_.proc_root, pid) + "/stat", 4096);
  Result<ProcessInfo> brief = stat.ok() ? discovery::ParseStat(*stat) : Result<ProcessInfo>(stat.error());
  if (!brief.ok()) {
    // Gone: the last resource known for the pid is the best answer for its late spans.
    if (cached) return cached;
    return Insert(pid, 0, Built{MinimalResource(pid, "", host_), nullptr}, epoch_before);
  }
  if (cached && cached_start == brief->start_time_ticks) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(pid);
    if (it != entries_.end() && it->second.start_time_ticks == cached_start) it->second.verified_at = now;
    return cached;
  }
  auto info = ReadProcessInfo(pid, options_.proc_root);
  if (!info.ok()) return MinimalResource(pid, brief->comm, host_);
  return Insert(pid, info->start_time_ticks, Build(*info), epoch_before);
}

std::shared_ptr<const Resource> ResourceCache::Get(const ProcessInfo& info) {
  uint64_t epoch_before;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(info.pid);
    if (it != entries_.end() && it->second.start_time_ticks == info.start_time_ticks &&
        info.start_time_ticks != 0) {
      lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
      UpgradeIfKnownLocked(it->second);
      return it->second.resource;
    }
    epoch_before = invalidation_epoch_;
  }
  return Insert(info.pid, info.start_time_ticks, Build(info), epoch_before);
}

void ResourceCache::OnExec(uint32_t pid) {
  std::lock_guard lock(mu_);
  ++invalidation_epoch_;
  auto it = entries_.find(pid);
  if (it == entries_.end()) return;
  lru_.erase(it->second.lru_pos);
  entries_.erase(it);
}

void ResourceCache::OnExecSeen(const ExecSnapshot& exec) {
  OnExec(exec.pid);
  uint64_t epoch_before;
  {
    std::lock_guard lock(mu_);
    epoch_before = invalidation_epoch_;
  }
  auto info = ReadProcessInfo(exec.pid, options_.proc_root);
  if (info.ok() && (exec.start_time_ticks == 0 || info->start_time_ticks == exec.start_time_ticks)) {
    Insert(exec.pid, info->start_time_ticks, Build(*info), epoch_before);
    return;
  }
  // Gone (or the pid names a newer process already): what the kernel saw at exec is all there is.
  from_exec_.Add();
  Insert(exec.pid, exec.start_time_ticks,
         Built{BuildResource(ProcessInfoFromExec(exec), /*environ=*/"", host_), nullptr}, epoch_before);
}

void ResourceCache::OnExit(uint32_t pid) {
  std::lock_guard lock(mu_);
  ++invalidation_epoch_;
  auto it = entries_.find(pid);
  if (it != entries_.end()) it->second.exited = true;
}

size_t ResourceCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace threadline
