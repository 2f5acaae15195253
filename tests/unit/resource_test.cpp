#include "agent/discovery/resource.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace threadline {
namespace {

namespace fs = std::filesystem;

// A /proc look-alike under a temporary directory, with just the files resource building reads.
class FakeProc {
 public:
  FakeProc() {
    std::string tmpl = (fs::temp_directory_path() / "threadline-resource-XXXXXX").string();
    root_ = ::mkdtemp(tmpl.data());
    Write("sys/kernel/hostname", "fake-host\n");
    Write("sys/kernel/random/boot_id", "6d0e1b4c-0000-4000-8000-000000000001\n");
  }
  ~FakeProc() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  const std::string& root() const { return root_; }

  struct Process {
    uint32_t pid = 0;
    uint32_t ppid = 1;
    std::string comm;
    std::string exe;  // symlink target; empty: no exe link
    std::vector<std::string> argv;
    std::vector<std::string> env;  // "K=V"; nullopt-like: set has_environ=false
    bool has_environ = true;
    uint64_t start_time = 1000;
  };

  void Add(const Process& p) {
    const std::string dir = std::to_string(p.pid);
    fs::remove_all(fs::path(root_) / dir);
    Write(dir + "/stat", std::to_string(p.pid) + " (" + p.comm + ") S " + std::to_string(p.ppid) +
                             " 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 " +
                             std::to_string(p.start_time) + " 0 0\n");
    Write(dir + "/comm", p.comm + "\n");
    Write(dir + "/cmdline", Join(p.argv));
    if (p.has_environ) Write(dir + "/environ", Join(p.env));
    if (!p.exe.empty()) fs::create_symlink(p.exe, fs::path(root_) / dir / "exe");
  }
  void Remove(uint32_t pid) { fs::remove_all(fs::path(root_) / std::to_string(pid)); }

 private:
  static std::string Join(const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& p : parts) {
      out += p;
      out += '\0';
    }
    return out;
  }
  void Write(const std::string& rel, const std::string& content) {
    fs::path path = fs::path(root_) / rel;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
  }
  std::string root_;
};

std::string StringAttr(const Resource& r, std::string_view key) {
  const AttributeValue* v = FindAttribute(r.attributes, key);
  if (!v || !std::holds_alternative<std::string>(*v)) return "<missing>";
  return std::get<std::string>(*v);
}

int64_t IntAttr(const Resource& r, std::string_view key) {
  const AttributeValue* v = FindAttribute(r.attributes, key);
  if (!v || !std::holds_alternative<int64_t>(*v)) return -1;
  return std::get<int64_t>(*v);
}

ResourceCacheOptions Options(const FakeProc& proc) {
  ResourceCacheOptions o;
  o.proc_root = proc.root();
  return o;
}

TEST(ResourceCache, OtelServiceNameFromEnviron) {
  FakeProc proc;
  proc.Add({.pid = 100, .ppid = 7, .comm = "server", .exe = "/opt/app/bin/server",
            .argv = {"/opt/app/bin/server", "--port=8080", "--db-password=hunter2"},
            .env = {"HOME=/root", "OTEL_SERVICE_NAME=checkout", "OTEL_SERVICE_NAME=ignored-second"}});
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  auto r = cache.Get(100);
  ASSERT_TRUE(r);
  EXPECT_EQ(StringAttr(*r, "service.name"), "checkout");
  EXPECT_EQ(StringAttr(*r, "host.name"), "fake-host");
  EXPECT_EQ(IntAttr(*r, "process.pid"), 100);
  EXPECT_EQ(IntAttr(*r, "process.parent_pid"), 7);
  EXPECT_EQ(StringAttr(*r, "process.executable.name"), "server");
  EXPECT_EQ(StringAttr(*r, "process.executable.path"), "/opt/app/bin/server");
  EXPECT_EQ(StringAttr(*r, "process.command_line"), "/opt/app/bin/server --port=8080 --db-password=REDACTED");
  EXPECT_EQ(StringAttr(*r, "telemetry.distro.name"), "threadline");
  EXPECT_EQ(StringAttr(*r, "telemetry.distro.version"), kScopeVersion);
  EXPECT_EQ(StringAttr(*r, "service.instance.id"),
            discovery::ServiceInstanceId(cache.host(), 100, 1000));
  EXPECT_EQ(cache.host().boot_id, "6d0e1b4c-0000-4000-8000-000000000001");
  // Attribute order is stable: service first, then host, process, distro.
  ASSERT_GE(r->attributes.size(), 10u);
  EXPECT_EQ(r->attributes[0].key, "service.name");
  EXPECT_EQ(r->attributes[1].key, "service.instance.id");
  EXPECT_EQ(r->attributes[2].key, "host.name");
  // Cached: the same object comes back.
  EXPECT_EQ(cache.Get(100).get(), r.get());
  EXPECT_EQ(metrics.CounterTotal("threadline_resource_builds_total"), 1u);
  EXPECT_EQ(metrics.CounterTotal("threadline_resource_environ_unreadable_total"), 0u);
}

TEST(ResourceCache, ResourceAttributesOnlyPercentEncoded) {
  FakeProc proc;
  proc.Add({.pid = 200, .comm = "java", .exe = "/usr/lib/jvm/bin/java",
            .argv = {"java", "-jar", "/srv/orders.jar"},
            .env = {"OTEL_RESOURCE_ATTRIBUTES= service.name=order%20service , deployment.environment.name=prod%2Ceu,"
                    "service.version=1.2.3,host.name=node-7,process.pid=1,telemetry.distro.name=other"}});
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  auto r = cache.Get(200);
  EXPECT_EQ(StringAttr(*r, "service.name"), "order service");
  EXPECT_EQ(StringAttr(*r, "deployment.environment.name"), "prod,eu");
  EXPECT_EQ(StringAttr(*r, "service.version"), "1.2.3");
  // The user's host.name wins over the detected one; observed process/telemetry facts do not
  // yield.
  EXPECT_EQ(StringAttr(*r, "host.name"), "node-7");
  EXPECT_EQ(IntAttr(*r, "process.pid"), 200);
  EXPECT_EQ(StringAttr(*r, "telemetry.distro.name"), "threadline");
  // Each key once.
  size_t service_names = 0;
  for (const auto& a : r->attributes) service_names += a.key == "service.name";
  EXPECT_EQ(service_names, 1u);
}

TEST(ResourceCache, OtelServiceNameBeatsResourceAttributes) {
  FakeProc proc;
  proc.Add({.pid = 201, .comm = "x", .exe = "/bin/x", .argv = {"x"},
            .env = {"OTEL_RESOURCE_ATTRIBUTES=service.name=from-attrs,team=payments",
                    "OTEL_SERVICE_NAME=from-env"}});
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  auto r = cache.Get(201);
  EXPECT_EQ(StringAttr(*r, "service.name"), "from-env");
  EXPECT_EQ(StringAttr(*r, "team"), "payments");
}

TEST(ResourceCache, MalformedResourceAttributesAreDroppedWhole) {
  FakeProc proc;
  proc.Add({.pid = 202, .comm = "nginx", .exe = "/usr/sbin/nginx", .argv = {"nginx: master process"},
            .env = {"OTEL_RESOURCE_ATTRIBUTES=team=payments,bad%zz=1"}});
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  auto r = cache.Get(202);
  EXPECT_EQ(StringAttr(*r, "service.name"), "nginx");
  EXPECT_EQ(StringAttr(*r, "team"), "<missing>");
}

TEST(ResourceCache, NeitherVariableUsesTheCommand) {
  FakeProc proc;
  proc.Add({.pid = 300, .comm = "python3", .exe = "/usr/bin/python3.11",
            .argv = {"python3", "-u", "-m", "http.server", "8000"}, .env = {"PATH=/usr/bin"}});
  proc.Add({.pid = 301, .comm = "nginx", .exe = "/usr/sbin/nginx", .argv = {"nginx", "-g", "daemon off;"}});
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  EXPECT_EQ(StringAttr(*cache.Get(300), "service.name"), "http.server");
  EXPECT_EQ(StringAttr(*cache.Get(300), "process.executable.name"), "python3.11");
  EXPECT_EQ(StringAttr(*cache.Get(301), "service.name"), "nginx");
}

TEST(ResourceCache, UnreadableEnvironIsCountedAndFallsBack) {
  FakeProc proc;
  proc.Add({.pid = 400, .comm = "node", .exe = "/usr/bin/node", .argv = {"node", "/srv/api/server.js"},
            .has_environ = false});
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  EXPECT_EQ(StringAttr(*cache.Get(400), "service.name"), "server");
  EXPECT_EQ(metrics.CounterTotal("threadline_resource_environ_unreadable_total"), 1u);
}

TEST(ResourceCache, EnvironReadIsBounded) {
  FakeProc proc;
  proc.Add({.pid = 401, .comm = "app", .exe = "/bin/app", .argv = {"app"},
            .env = {"OTEL_SERVICE_NAME=early", "PAD=" + std::string(300 * 1024, 'x'),
                    "OTEL_RESOURCE_ATTRIBUTES=late=1"}});
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  auto r = cache.Get(401);
  EXPECT_EQ(StringAttr(*r, "service.name"), "early");
  EXPECT_EQ(StringAttr(*r, "late"), "<missing>");
}

TEST(ResourceCache, ReusedPidGetsAFreshResource) {
  FakeProc proc;
  proc.Add({.pid = 500, .comm = "old", .exe = "/bin/old", .argv = {"old"},
            .env = {"OTEL_SERVICE_NAME=old-service"}, .start_time = 1000});
  MetricsRegistry metrics;
  ResourceCacheOptions opts = Options(proc);
  opts.revalidate_after = std::chrono::milliseconds(0);  // check /proc on every Get(pid)
  ResourceCache cache(opts, metrics);
  auto old_resource = cache.Get(500);
  EXPECT_EQ(StringAttr(*old_resource, "service.name"), "old-service");
  EXPECT_EQ(cache.Get(500).get(), old_resource.get());  // revalidated, same process

  // The process exits without us hearing of it, and a new one gets the pid.
  proc.Add({.pid = 500, .comm = "new", .exe = "/bin/new", .argv = {"new"},
            .env = {"OTEL_SERVICE_NAME=new-service"}, .start_time = 2000});
  auto fresh = cache.Get(500);
  EXPECT_EQ(StringAttr(*fresh, "service.name"), "new-service");
  EXPECT_NE(StringAttr(*fresh, "service.instance.id"), StringAttr(*old_resource, "service.instance.id"));

  // Get(ProcessInfo) is keyed by (pid, start time) and needs no revalidation at all.
  ProcessInfo third{.pid = 500, .ppid = 1, .comm = "third", .exe_path = "/bin/third",
                    .cmdline = {"third"}, .start_time_ticks = 3000};
  proc.Add({.pid = 500, .comm = "third", .exe = "/bin/third", .argv = {"third"}, .start_time = 3000});
  EXPECT_EQ(StringAttr(*cache.Get(third), "service.name"), "third");
  EXPECT_EQ(cache.Get(third).get(), cache.Get(third).get());
  EXPECT_EQ(cache.size(), 1u);
}

TEST(ResourceCache, TrustsTheEntryWithinTheRevalidationWindow) {
  FakeProc proc;
  proc.Add({.pid = 501, .comm = "a", .exe = "/bin/a", .argv = {"a"}, .start_time = 1});
  MetricsRegistry metrics;
  ResourceCacheOptions opts = Options(proc);
  opts.revalidate_after = std::chrono::hours(1);
  ResourceCache cache(opts, metrics);
  auto first = cache.Get(501);
  proc.Add({.pid = 501, .comm = "b", .exe = "/bin/b", .argv = {"b"}, .start_time = 2});
  EXPECT_EQ(cache.Get(501).get(), first.get());
  // The exit notification makes the next Get look again.
  cache.OnExit(501);
  EXPECT_EQ(StringAttr(*cache.Get(501), "service.name"), "b");
}

TEST(ResourceCache, ExecRebuilds) {
  FakeProc proc;
  proc.Add({.pid = 600, .comm = "sh", .exe = "/bin/sh", .argv = {"sh", "-c", "exec app"}});
  MetricsRegistry metrics;
  ResourceCacheOptions opts = Options(proc);
  opts.revalidate_after = std::chrono::hours(1);
  ResourceCache cache(opts, metrics);
  EXPECT_EQ(StringAttr(*cache.Get(600), "service.name"), "sh");
  // Same pid, same start time, new program.
  proc.Add({.pid = 600, .comm = "app", .exe = "/usr/bin/app", .argv = {"app"}});
  cache.OnExec(600);
  EXPECT_EQ(StringAttr(*cache.Get(600), "service.name"), "app");
}

TEST(ResourceCache, VanishedPidGetsMinimalResource) {
  FakeProc proc;
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  auto r = cache.Get(700);
  ASSERT_TRUE(r);
  EXPECT_EQ(StringAttr(*r, "service.name"), "unknown_service:700");
  EXPECT_EQ(IntAttr(*r, "process.pid"), 700);
  EXPECT_EQ(StringAttr(*r, "host.name"), "fake-host");

  // A process that appears under that pid later is read properly.
  proc.Add({.pid = 700, .comm = "late", .exe = "/bin/late", .argv = {"late"}});
  EXPECT_EQ(StringAttr(*cache.Get(700), "service.name"), "late");

  auto minimal = MinimalResource(9, "worker", cache.host());
  EXPECT_EQ(StringAttr(*minimal, "service.name"), "unknown_service:worker");
}

TEST(ResourceCache, ExitedProcessKeepsItsResourceForLateSpans) {
  FakeProc proc;
  proc.Add({.pid = 800, .comm = "api", .exe = "/bin/api", .argv = {"api"},
            .env = {"OTEL_SERVICE_NAME=api"}});
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  auto r = cache.Get(800);
  proc.Remove(800);
  cache.OnExit(800);
  EXPECT_EQ(cache.Get(800).get(), r.get());
  EXPECT_EQ(StringAttr(*cache.Get(800), "service.name"), "api");
}

// A short-lived client gone (and reaped) before the agent got to its exec event: named from
// what the kernel reported at exec, with the same identity /proc would have given.
TEST(ResourceCache, ProcessGoneBeforeItsExecWasReadIsNamedFromTheExec) {
  FakeProc proc;  // pid 1200 is not in it: gone
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  using namespace std::string_view_literals;
  const ExecSnapshot exec{.pid = 1200, .ppid = 77, .start_time_ticks = 4242, .comm = "curl",
                          .filename = "/usr/bin/curl", .exe_name = "curl",
                          .args = "curl\0-sS\0http://127.0.0.1:8000/x?token=s3cret\0"sv};
  cache.OnExecSeen(exec);
  auto r = cache.Get(1200);
  EXPECT_EQ(StringAttr(*r, "service.name"), "curl");
  EXPECT_EQ(StringAttr(*r, "process.executable.name"), "curl");
  EXPECT_EQ(StringAttr(*r, "process.executable.path"), "/usr/bin/curl");
  EXPECT_EQ(StringAttr(*r, "process.command_line"), "curl -sS http://127.0.0.1:8000/x?token=REDACTED");
  EXPECT_EQ(IntAttr(*r, "process.parent_pid"), 77);
  EXPECT_EQ(StringAttr(*r, "service.instance.id"), discovery::ServiceInstanceId(cache.host(), 1200, 4242));
  EXPECT_EQ(metrics.CounterTotal("threadline_resource_from_exec_total"), 1u);
  // Spans built later (the process stays gone) keep that resource.
  EXPECT_EQ(cache.Get(1200).get(), r.get());
}

// Alive when the exec is handled: read from /proc as before (OTEL_SERVICE_NAME only lives there).
TEST(ResourceCache, ProcessAliveAtItsExecIsReadFromProc) {
  FakeProc proc;
  proc.Add({.pid = 1300, .comm = "worker", .exe = "/usr/bin/worker", .argv = {"worker"},
            .env = {"OTEL_SERVICE_NAME=billing"}, .start_time = 5000});
  MetricsRegistry metrics;
  ResourceCache cache(Options(proc), metrics);
  cache.OnExecSeen({.pid = 1300, .ppid = 1, .start_time_ticks = 5000, .comm = "worker",
                    .filename = "/usr/bin/worker", .exe_name = "worker", .args = "worker"});
  proc.Remove(1300);  // reaped right after: the cached resource stands
  EXPECT_EQ(StringAttr(*cache.Get(1300), "service.name"), "billing");
  EXPECT_EQ(metrics.CounterTotal("threadline_resource_from_exec_total"), 0u);
  // The pid already names a newer process (other start time): the exec's own snapshot wins.
  proc.Add({.pid = 1301, .comm = "other", .exe = "/usr/bin/other", .argv = {"other"}, .start_time = 9000});
  cache.OnExecSeen({.pid = 1301, .ppid = 1, .start_time_ticks = 8000, .comm = "curl",
                    .filename = "/usr/bin/curl", .exe_name = "curl", .args = "curl"});
  EXPECT_EQ(StringAttr(*cache.Get(1301), "service.name"), "curl");
}

TEST(ProcessInfoFromExec, ExecutablePathOnlyWhenThePathNamesIt) {
  using namespace std::string_view_literals;
  // execve("/usr/bin/curl"): the path is the executable's.
  ProcessInfo curl = ProcessInfoFromExec({.pid = 1, .comm = "curl", .filename = "/usr/bin/curl",
                                          .exe_name = "curl", .args = "curl\0-v\0"sv});
  EXPECT_EQ(curl.exe_path, "/usr/bin/curl");
  EXPECT_EQ(curl.cmdline, (std::vector<std::string>{"curl", "-v"}));
  // A symlink (python3 -> python3.11): only the name is known, the name /proc would give.
  ProcessInfo py = ProcessInfoFromExec({.pid = 2, .comm = "python3", .filename = "/usr/bin/python3",
                                        .exe_name = "python3.11", .args = "/usr/bin/python3\0-c\0pass\0"sv});
  EXPECT_EQ(py.exe_path, "");
  EXPECT_EQ(py.exe_name, "python3.11");
  EXPECT_EQ(StringAttr(*BuildResource(py, "", HostIdentity{}), "service.name"), "python3.11");
  // A script run by its #! line: the file passed to exec is the script, not the executable.
  ProcessInfo script = ProcessInfoFromExec({.pid = 3, .comm = "report.py", .filename = "/srv/report.py",
                                            .exe_name = "python3.11",
                                            .args = "/usr/bin/python3\0/srv/report.py\0"sv});
  EXPECT_EQ(script.exe_path, "");
  auto r = BuildResource(script, "", HostIdentity{});
  EXPECT_EQ(StringAttr(*r, "service.name"), "report");
  EXPECT_EQ(StringAttr(*r, "process.executable.name"), "python3.11");
  EXPECT_EQ(StringAttr(*r, "process.executable.path"), "<missing>");
  // Relative paths say nothing about where the file is.
  EXPECT_EQ(ProcessInfoFromExec({.filename = "./curl", .exe_name = "curl"}).exe_path, "");
}

TEST(ResourceCache, BoundedLru) {
  FakeProc proc;
  for (uint32_t pid = 900; pid < 905; ++pid)
    proc.Add({.pid = pid, .comm = "p", .exe = "/bin/p", .argv = {"p"}});
  MetricsRegistry metrics;
  ResourceCacheOptions opts = Options(proc);
  opts.capacity = 3;
  ResourceCache cache(opts, metrics);
  for (uint32_t pid = 900; pid < 905; ++pid) cache.Get(pid);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(metrics.CounterTotal("threadline_resource_cache_evictions_total"), 2u);
}

TEST(ResourceCache, RealProcSelf) {
  MetricsRegistry metrics;
  ResourceCache cache({}, metrics);
  auto r = cache.Get(static_cast<uint32_t>(::getpid()));
  ASSERT_TRUE(r);
  EXPECT_EQ(IntAttr(*r, "process.pid"), ::getpid());
  EXPECT_EQ(IntAttr(*r, "process.parent_pid"), ::getppid());
  // Whatever this test binary is called (unit_tests, or a sanitizer build's name).
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  const std::string exe_name = fs::path(exe).filename().string();
  EXPECT_EQ(StringAttr(*r, "process.executable.path"), exe);
  EXPECT_EQ(StringAttr(*r, "process.executable.name"), exe_name);
  const char* env_name = std::getenv("OTEL_SERVICE_NAME");
  EXPECT_EQ(StringAttr(*r, "service.name"), env_name && *env_name ? std::string(env_name) : exe_name);
  EXPECT_FALSE(StringAttr(*r, "host.name").empty());
  EXPECT_EQ(StringAttr(*r, "service.instance.id").size(), 36u);
  EXPECT_FALSE(cache.host().boot_id.empty());
  EXPECT_EQ(metrics.CounterTotal("threadline_resource_environ_unreadable_total"), 0u);
}

TEST(ParseResourceAttributes, Grammar) {
  auto ok = discovery::ParseResourceAttributes(" a=1 ,b = two%20words,,c=,d%3Dk=v%2C ");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  ASSERT_EQ(ok->size(), 4u);
  EXPECT_EQ((*ok)[0], (Attribute{"a", std::string("1")}));
  EXPECT_EQ((*ok)[1], (Attribute{"b", std::string("two words")}));
  EXPECT_EQ((*ok)[2], (Attribute{"c", std::string("")}));
  EXPECT_EQ((*ok)[3], (Attribute{"d=k", std::string("v,")}));
  auto dup = discovery::ParseResourceAttributes("a=1,a=2");
  ASSERT_TRUE(dup.ok());
  ASSERT_EQ(dup->size(), 1u);
  EXPECT_EQ((*dup)[0].value, AttributeValue(std::string("2")));
  EXPECT_TRUE(discovery::ParseResourceAttributes("").ok());
  EXPECT_FALSE(discovery::ParseResourceAttributes("a").ok());
  EXPECT_FALSE(discovery::ParseResourceAttributes("=1").ok());
  EXPECT_FALSE(discovery::ParseResourceAttributes("a=%").ok());
  EXPECT_FALSE(discovery::ParseResourceAttributes("a=%4").ok());
  EXPECT_FALSE(discovery::ParseResourceAttributes("a=%g1").ok());
}

TEST(EnvironValue, FirstExactMatch) {
  std::string env("OTEL_SERVICE_NAME_X=no\0OTEL_SERVICE_NAME=yes\0OTEL_SERVICE_NAME=later\0", 67);
  EXPECT_EQ(discovery::EnvironValue(env, "OTEL_SERVICE_NAME"), "yes");
  EXPECT_EQ(discovery::EnvironValue(env, "OTEL_SERVICE"), std::nullopt);
  EXPECT_EQ(discovery::EnvironValue("", "A"), std::nullopt);
}

TEST(ServiceNameFromCommand, Table) {
  struct Case {
    std::string exe;
    std::vector<std::string> argv;
    std::string comm;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"/usr/sbin/nginx", {"nginx: worker process"}, "nginx", "nginx"},
      {"/usr/bin/python3.11", {"python3", "-m", "http.server"}, "python3", "http.server"},
      {"/usr/bin/python3.11", {"python3", "-mgunicorn", "app:app"}, "python3", "gunicorn"},
      {"/usr/bin/python3.11", {"python3", "-u", "-X", "dev", "/srv/shop/manage.py", "runserver"}, "", "manage"},
      {"/usr/bin/python3.11", {"python3", "/srv/shop/__main__.py"}, "", "shop"},
      {"/usr/bin/python3.11", {"python3", "-c", "print(1)"}, "", "python3.11"},
      {"/usr/bin/python3.11", {"python3"}, "", "python3.11"},
      {"/usr/bin/pypy3", {"pypy3", "app.py"}, "", "app"},
      {"/usr/bin/node", {"node", "--require", "dotenv/config", "/srv/api/server.js"}, "", "server"},
      {"/usr/bin/node", {"node", "/srv/orders/index.mjs"}, "", "orders"},
      {"/usr/bin/node", {"node", "index.js"}, "", "index"},
      {"/usr/bin/node", {"node", "-e", "1"}, "", "node"},
      {"/usr/lib/jvm/java-17/bin/java", {"java", "-Xmx1g", "-cp", "lib/*", "-jar", "/opt/orders-1.0.jar"}, "", "orders-1.0"},
      {"/usr/lib/jvm/java-17/bin/java", {"java", "-cp", "app.jar", "com.acme.Inventory"}, "", "Inventory"},
      {"/usr/lib/jvm/java-17/bin/java", {"java", "--module", "shop.core/shop.core.Main"}, "", "shop.core"},
      {"/usr/bin/ruby3.2", {"ruby", "-I", "lib", "bin/rails"}, "", "rails"},
      {"/usr/bin/perl", {"perl", "-e", "print 1"}, "", "perl"},
      {"/usr/bin/php8.2", {"php", "-d", "x=1", "-f", "/var/www/index.php"}, "", "www"},
      {"", {"/usr/local/bin/envoy", "-c", "x"}, "envoy", "envoy"},
      {"", {}, "kworker/0:1", "kworker/0:1"},
      {"", {}, "", "unknown_service"},
  };
  for (const auto& c : cases)
    EXPECT_EQ(discovery::ServiceNameFromCommand(c.exe, c.argv, c.comm), c.want) << c.exe << " " << (c.argv.empty() ? "" : c.argv.back());
}

TEST(UuidV5, KnownVectors) {
  // RFC 4122 DNS namespace 6ba7b810-9dad-11d1-80b4-00c04fd430c8.
  constexpr std::array<uint8_t, 16> kDns = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                            0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
  EXPECT_EQ(discovery::UuidV5(kDns, "www.opentofu.org"), "df1e675d-b743-5f6c-9952-6311d0f141df");
  EXPECT_EQ(discovery::ServiceInstanceId({.host_name = "h", .boot_id = "boot-1"}, 42, 1000),
            "a20a5f6e-6f5f-55a7-924e-eef16c9caebe");
  // More than one SHA-1 block.
  EXPECT_EQ(discovery::UuidV5(discovery::kServiceInstanceNamespace, std::string(200, 'x')),
            "6ee913e8-79f5-5d01-bdb9-cfcdb05862ba");
}

}  // namespace
}  // namespace threadline
