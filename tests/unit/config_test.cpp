// Configuration: the one precedence (flags > environment > file > defaults), each source alone,
// the origin every value remembers, unknown keys and bad values from each source, and
// --print-config's YAML loading back to the same settings.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "agent/app/options.h"
#include "agent/config/config_file.h"
#include "agent/config/settings.h"

namespace threadline {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A config file in a temporary directory, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char tmpl[] = "/tmp/tl-config-test-XXXXXX";
    int fd = mkstemp(tmpl);
    path_ = tmpl;
    ::close(fd);
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Result<AgentOptions> Parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  args.insert(args.begin(), "threadline");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return ParseOptions(static_cast<int>(args.size()), argv.data(), WithOverrides(std::move(env), nullptr));
}

AgentOptions Ok(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  auto r = Parse(std::move(args), std::move(env));
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? r.value() : AgentOptions{};
}

std::string Fails(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  auto r = Parse(std::move(args), std::move(env));
  EXPECT_FALSE(r.ok()) << "accepted";
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, 2) << r.error().message;
  return r.error().message;
}

TEST(Config, DefaultsEverywhereWithNoSource) {
  AgentOptions o = Ok({});
  EXPECT_EQ(o.output, OutputMode::kConsole);
  EXPECT_EQ(o.capture_bytes, 4096u);
  EXPECT_EQ(o.ring_buffer_mb, 16u);
  EXPECT_EQ(o.max_connections, 65536u);
  EXPECT_EQ(o.metrics_address, "127.0.0.1:9464");
  EXPECT_EQ(o.ui_address, "127.0.0.1:9465");
  EXPECT_EQ(o.trace_store_max_traces, 2000u);
  EXPECT_EQ(o.trace_store_max_mb, 8u);
  EXPECT_TRUE(o.tls);
  EXPECT_EQ(o.inject, Toggle::kAuto);
  EXPECT_TRUE(o.same_node_linking);
  EXPECT_EQ(o.proc_root, "/proc");
  EXPECT_DOUBLE_EQ(o.sampling_ratio, 1.0);
  EXPECT_EQ(o.kubernetes.enabled, Toggle::kAuto);
  EXPECT_FALSE(o.kubernetes.active);
  EXPECT_EQ(o.kubernetes.cache_max_pods, 5000u);
  EXPECT_EQ(o.kubernetes.api_server, "");
  // Every setting of the table has an origin, and with no source it is the default.
  EXPECT_EQ(o.sources.size(), config::Settings().size());
  for (const auto& [key, origin] : o.sources) EXPECT_EQ(origin.source, ConfigSource::kDefault) << key;
}

TEST(Config, FileSetsNestedKeys) {
  TempFile f(R"(# a comment
selection:
  pids: [10, 20]
  exe: "*nginx*"        # a scalar where a list is expected: one item
  ports:
    - 8080
  namespaces: [shop]
  labels: {app: web, tier: front}
routes: ["/items/{id}"]
sampling:
  ratio: 0.25
redaction:
  query_keys: [ticket]
  headers: [x-session]
limits:
  capture_bytes: 8192
  ring_buffer_mb: 32
  max_connections: 1024
exporters:
  output: json
  otlp:
    protocol: grpc
    timeout_ms: 2500
metrics:
  address: off
tls: off
inject: on
same_node_linking: off
proc_root: /host/proc
kubernetes:
  enabled: on
  node_name: node-a
  cache_max_pods: 100
)");
  AgentOptions o = Ok({"--config", f.path()});
  EXPECT_EQ(o.pids, (std::vector<uint32_t>{10, 20}));
  EXPECT_EQ(o.exe_globs, (std::vector<std::string>{"*nginx*"}));
  EXPECT_EQ(o.ports, (std::vector<uint16_t>{8080}));
  EXPECT_EQ(o.namespaces, (std::vector<std::string>{"shop"}));
  EXPECT_EQ(o.labels, (std::vector<std::string>{"app=web", "tier=front"}));
  EXPECT_EQ(o.routes, (std::vector<std::string>{"/items/{id}"}));
  EXPECT_DOUBLE_EQ(o.sampling_ratio, 0.25);
  EXPECT_EQ(o.redact_query_keys, (std::vector<std::string>{"ticket"}));
  EXPECT_EQ(o.redact_header_names, (std::vector<std::string>{"x-session"}));
  EXPECT_EQ(o.capture_bytes, 8192u);
  EXPECT_EQ(o.ring_buffer_mb, 32u);
  EXPECT_EQ(o.max_connections, 1024u);
  EXPECT_EQ(o.output, OutputMode::kJson);
  EXPECT_EQ(o.otlp_protocol, "grpc");
  EXPECT_EQ(o.otlp_timeout_ms, 2500u);
  EXPECT_EQ(o.metrics_address, "");
  EXPECT_FALSE(o.tls);
  EXPECT_EQ(o.inject, Toggle::kOn);
  EXPECT_FALSE(o.same_node_linking);
  EXPECT_EQ(o.proc_root, "/host/proc");
  EXPECT_EQ(o.kubernetes.enabled, Toggle::kOn);
  EXPECT_TRUE(o.kubernetes.active);
  EXPECT_EQ(o.kubernetes.node_name, "node-a");
  EXPECT_EQ(o.kubernetes.cache_max_pods, 100u);
  EXPECT_EQ(o.sources.at("limits.capture_bytes").source, ConfigSource::kFile);
  EXPECT_EQ(o.sources.at("limits.capture_bytes").where, f.path() + ":16");
  EXPECT_EQ(o.sources.at("selection.pids").where, f.path() + ":3");
  EXPECT_EQ(o.sources.at("log_level").source, ConfigSource::kDefault);
}

TEST(Config, EnvironmentAlone) {
  AgentOptions o = Ok({}, {{"THREADLINE_LIMITS_CAPTURE_BYTES", "1024"},
                           {"THREADLINE_SELECTION_EXE", "curl, *python*,"},
                           {"THREADLINE_LOG_LEVEL", "debug"},
                           {"THREADLINE_TLS", "false"},
                           {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
                           {"NODE_NAME", "node-b"}});
  EXPECT_EQ(o.capture_bytes, 1024u);
  EXPECT_EQ(o.exe_globs, (std::vector<std::string>{"curl", "*python*"}));
  EXPECT_EQ(o.log_level, "debug");
  EXPECT_FALSE(o.tls);
  EXPECT_EQ(o.otlp_protocol, "grpc");
  EXPECT_EQ(o.kubernetes.node_name, "node-b");
  EXPECT_EQ(o.sources.at("limits.capture_bytes").where, "THREADLINE_LIMITS_CAPTURE_BYTES");
  EXPECT_EQ(o.sources.at("exporters.otlp.protocol").where, "OTEL_EXPORTER_OTLP_PROTOCOL");
  EXPECT_EQ(o.sources.at("kubernetes.node_name").where, "NODE_NAME");
  EXPECT_EQ(o.sources.at("kubernetes.node_name").source, ConfigSource::kEnv);
}

TEST(Config, FlagsAlone) {
  AgentOptions o = Ok({"--pid", "7", "--pid=8", "--capture-bytes", "64", "--tls", "off", "--output=events",
                       "--inject", "off", "--same-node-linking", "off", "--proc-root", "/host/proc",
                       "--sampling-ratio", "0.5", "--kubernetes", "off"});
  EXPECT_EQ(o.pids, (std::vector<uint32_t>{7, 8}));
  EXPECT_EQ(o.capture_bytes, 64u);
  EXPECT_FALSE(o.tls);
  EXPECT_EQ(o.output, OutputMode::kEvents);
  EXPECT_EQ(o.inject, Toggle::kOff);
  EXPECT_FALSE(o.same_node_linking);
  EXPECT_EQ(o.proc_root, "/host/proc");
  EXPECT_DOUBLE_EQ(o.sampling_ratio, 0.5);
  EXPECT_EQ(o.sources.at("selection.pids").source, ConfigSource::kFlag);
  EXPECT_EQ(o.sources.at("selection.pids").where, "--pid");
}

TEST(Config, PrecedenceFlagsOverEnvOverFileOverDefaults) {
  TempFile f("limits:\n  capture_bytes: 256\n  ring_buffer_mb: 4\n  max_connections: 128\nlog_level: warn\n");
  const std::map<std::string, std::string> env{{"THREADLINE_LIMITS_CAPTURE_BYTES", "512"},
                                               {"THREADLINE_LIMITS_RING_BUFFER_MB", "8"}};
  AgentOptions o = Ok({"--config", f.path(), "--capture-bytes", "1024"}, env);
  EXPECT_EQ(o.capture_bytes, 1024u);  // flag > env > file
  EXPECT_EQ(o.ring_buffer_mb, 8u);    // env > file
  EXPECT_EQ(o.max_connections, 128u); // file > default
  EXPECT_EQ(o.log_level, "warn");
  EXPECT_EQ(o.print_payload_bytes, 256u);  // default
  EXPECT_EQ(o.sources.at("limits.capture_bytes").source, ConfigSource::kFlag);
  EXPECT_EQ(o.sources.at("limits.ring_buffer_mb").source, ConfigSource::kEnv);
  EXPECT_EQ(o.sources.at("limits.max_connections").source, ConfigSource::kFile);
  EXPECT_EQ(o.sources.at("exporters.print_payload_bytes").source, ConfigSource::kDefault);
  // A list from a higher source replaces the whole list (no merge).
  TempFile lists("selection:\n  exe: [a, b]\n");
  AgentOptions l = Ok({"--config", lists.path(), "--exe", "c"});
  EXPECT_EQ(l.exe_globs, (std::vector<std::string>{"c"}));
}

TEST(Config, ConfigFileFromEnvironmentAndFlagWins) {
  TempFile a("log_level: error\n");
  TempFile b("log_level: debug\n");
  EXPECT_EQ(Ok({}, {{"THREADLINE_CONFIG", a.path()}}).log_level, "error");
  EXPECT_EQ(Ok({"--config", b.path()}, {{"THREADLINE_CONFIG", a.path()}}).log_level, "debug");
}

TEST(Config, OtlpStandardVariablesAndEndpointRules) {
  // An endpoint anywhere makes otlp the default output.
  AgentOptions o = Ok({}, {{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"}});
  EXPECT_EQ(o.output, OutputMode::kOtlp);
  EXPECT_EQ(o.sources.at("exporters.output").source, ConfigSource::kDefault);
  auto cfg = OtlpExporterConfigFromEnv(OtlpEnvironment(o, nullptr));
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_EQ(cfg->endpoint, "http://collector:4318/v1/traces");
  // The TRACES_ variant wins over the generic one within the environment...
  o = Ok({}, {{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"}, {"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}});
  EXPECT_EQ(o.otlp_protocol, "grpc");
  // ...but a flag beats both, even the specific endpoint variable.
  o = Ok({"--otlp-endpoint", "http://flag:4318", "--otlp-protocol", "http/protobuf"},
         {{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://env:4318/custom"},
          {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"}});
  cfg = OtlpExporterConfigFromEnv(OtlpEnvironment(o, WithOverrides({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                                                     "http://env:4318/custom"}},
                                                                   nullptr)));
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_EQ(cfg->endpoint, "http://flag:4318/v1/traces");
  EXPECT_EQ(cfg->protocol, OtlpProtocol::kHttpProtobuf);
  // A file's traces_endpoint stays when the env sets only the generic endpoint? No: env is
  // higher than the file, so the env's base endpoint overrides the file's specific one.
  TempFile f("exporters:\n  otlp:\n    traces_endpoint: http://file:4318/t\n    headers: api-key=abc\n");
  o = Ok({"--config", f.path()}, {{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"}});
  EXPECT_EQ(o.otlp_traces_endpoint, "");
  EXPECT_THAT(o.sources.at("exporters.otlp.traces_endpoint").where, HasSubstr("overridden"));
  cfg = OtlpExporterConfigFromEnv(OtlpEnvironment(o, nullptr));
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_EQ(cfg->endpoint, "http://env:4318/v1/traces");
  ASSERT_EQ(cfg->headers.size(), 1u);
  EXPECT_EQ(cfg->headers[0].second, "abc");
  // An explicit output wins over the endpoint rule.
  EXPECT_EQ(Ok({"--output", "none", "--otlp-endpoint", "http://x:4318"}).output, OutputMode::kNone);
}

TEST(Config, KubernetesDefaultsFromThePodEnvironment) {
  AgentOptions o = Ok({}, {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "6443"},
                           {"NODE_NAME", "worker-1"}});
  EXPECT_TRUE(o.kubernetes.active);  // auto + in a pod
  EXPECT_EQ(o.kubernetes.api_server, "https://10.96.0.1:6443");
  EXPECT_EQ(o.sources.at("kubernetes.api_server").source, ConfigSource::kDefault);
  EXPECT_EQ(o.kubernetes.node_name, "worker-1");
  o = Ok({"--kubernetes", "off"}, {{"KUBERNETES_SERVICE_HOST", "fd00::1"}});
  EXPECT_FALSE(o.kubernetes.active);
  EXPECT_EQ(o.kubernetes.api_server, "https://[fd00::1]:443");
  // THREADLINE_KUBERNETES_NODE_NAME is read before NODE_NAME.
  o = Ok({}, {{"THREADLINE_KUBERNETES_NODE_NAME", "a"}, {"NODE_NAME", "b"}});
  EXPECT_EQ(o.kubernetes.node_name, "a");
}

TEST(Config, UnknownKeysAreErrorsNamingTheKey) {
  TempFile typo("selection:\n  exes: [nginx]\n");
  std::string e = Fails({"--config", typo.path()});
  EXPECT_THAT(e, HasSubstr("unknown key selection.exes"));
  EXPECT_THAT(e, HasSubstr(typo.path() + ":2"));
  EXPECT_THAT(e, HasSubstr("did you mean selection.exe?"));
  TempFile top("limit:\n  capture_bytes: 64\n");
  EXPECT_THAT(Fails({"--config", top.path()}), HasSubstr("unknown key limit"));
  TempFile deep("exporters:\n  otlp:\n    endpoit: http://x\n");
  EXPECT_THAT(Fails({"--config", deep.path()}), HasSubstr("unknown key exporters.otlp.endpoit"));
  TempFile dup("tls: on\ntls: off\n");
  EXPECT_THAT(Fails({"--config", dup.path()}), HasSubstr("duplicate key tls"));
  TempFile section_as_value("limits: 5\n");
  EXPECT_THAT(Fails({"--config", section_as_value.path()}), HasSubstr("limits is a section"));
  TempFile list_for_scalar("log_level: [info]\n");
  EXPECT_THAT(Fails({"--config", list_for_scalar.path()}), HasSubstr("log_level: expected one value"));
  TempFile not_map("- a\n- b\n");
  EXPECT_THAT(Fails({"--config", not_map.path()}), HasSubstr("expected a map"));
  TempFile broken("selection: [\n");
  EXPECT_THAT(Fails({"--config", broken.path()}), HasSubstr("not valid YAML"));
  EXPECT_THAT(Fails({"--config", "/nonexistent/threadline.yaml"}), HasSubstr("cannot read"));
  auto flag = Parse({"--no-such-flag"});  // CLI11's own usage error and exit code
  ASSERT_FALSE(flag.ok());
  EXPECT_NE(flag.error().code, 0);
  EXPECT_THAT(flag.error().message, HasSubstr("no-such-flag"));
}

TEST(Config, BadValuesFromEachSourceNameTheSource) {
  TempFile f("limits:\n  capture_bytes: 100\n");
  std::string e = Fails({"--config", f.path()});
  EXPECT_THAT(e, HasSubstr(f.path() + ":2: limits.capture_bytes"));
  EXPECT_THAT(e, HasSubstr("power of two"));
  e = Fails({}, {{"THREADLINE_LIMITS_CAPTURE_BYTES", "lots"}});
  EXPECT_THAT(e, HasSubstr("env THREADLINE_LIMITS_CAPTURE_BYTES"));
  EXPECT_THAT(e, HasSubstr("not a non-negative integer"));
  EXPECT_THAT(Fails({"--capture-bytes", "100000"}), HasSubstr("--capture-bytes: \"100000\" is out of range"));
  EXPECT_THAT(Fails({"--output=bogus"}), HasSubstr("not one of otlp, console"));
  EXPECT_THAT(Fails({"--tls", "maybe"}), HasSubstr("not on or off"));
  EXPECT_THAT(Fails({"--inject", "sometimes"}), HasSubstr("not auto, on or off"));
  EXPECT_THAT(Fails({"--sampling-ratio", "1.5"}), HasSubstr("out of range"));
  EXPECT_THAT(Fails({"--port", "70000"}), HasSubstr("out of range"));
  EXPECT_THAT(Fails({"--label", "novalue"}), HasSubstr("key=value"));
  EXPECT_THAT(Fails({"--proc-root", "host/proc"}), HasSubstr("absolute path"));
  EXPECT_THAT(Fails({"--log-level", "loud"}), HasSubstr("--log-level"));
  EXPECT_THAT(Fails({"--route", "/a/{"}), HasSubstr("--route"));
  EXPECT_THAT(Fails({}, {{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}}),
              HasSubstr("env OTEL_EXPORTER_OTLP_PROTOCOL"));
  EXPECT_THAT(Fails({}, {{"OTEL_EXPORTER_OTLP_HEADERS", "=novalue"}}), HasSubstr("OTEL_EXPORTER_OTLP_HEADERS"));
  EXPECT_THAT(Fails({"--otlp-endpoint", "grpc://x:1", "--otlp-protocol", "grpc"}), HasSubstr("OTLP exporter"));
}

TEST(Config, PrintConfigShowsSourcesAndLoadsBack) {
  TempFile f("selection:\n  exe: [\"*nginx*\", 'py \"q\"']\n  labels: {app: web}\nlimits:\n  max_connections: 4096\n");
  AgentOptions o = Ok({"--config", f.path(), "--port", "80", "--otlp-headers", "api-key=s3cret,x=1"},
                      {{"THREADLINE_LIMITS_RING_BUFFER_MB", "64"}});
  const std::string yaml = FormatEffectiveConfig(o);
  EXPECT_THAT(yaml, HasSubstr("  max_connections: \"4096\"  # file " + f.path() + ":5\n"));
  EXPECT_THAT(yaml, HasSubstr("  ring_buffer_mb: \"64\"  # env THREADLINE_LIMITS_RING_BUFFER_MB\n"));
  EXPECT_THAT(yaml, HasSubstr("  ports: [\"80\"]  # flag --port\n"));
  EXPECT_THAT(yaml, HasSubstr("  capture_bytes: \"4096\"  # default\n"));
  EXPECT_THAT(yaml, HasSubstr("  labels: {\"app\": \"web\"}  # file"));
  EXPECT_THAT(yaml, HasSubstr("enabled: \"auto\"  # default; resolved: off"));
  // Secrets never printed.
  EXPECT_THAT(yaml, Not(HasSubstr("s3cret")));
  EXPECT_THAT(yaml, HasSubstr("headers: \"api-key=REDACTED,x=REDACTED\""));
  // Loading the printed YAML gives the same settings (headers aside: they are redacted).
  auto values = config::ParseConfigText(yaml, "printed");
  ASSERT_TRUE(values.ok()) << values.error().message << "\n" << yaml;
  TempFile again(yaml);
  AgentOptions back = Ok({"--config", again.path()});
  EXPECT_EQ(back.exe_globs, o.exe_globs);
  EXPECT_EQ(back.labels, o.labels);
  EXPECT_EQ(back.ports, o.ports);
  EXPECT_EQ(back.max_connections, 4096u);
  EXPECT_EQ(back.ring_buffer_mb, 64u);
  EXPECT_EQ(back.metrics_address, o.metrics_address);
  for (const auto& s : config::Settings()) {
    if (s.secret) continue;
    EXPECT_EQ(s.get(back), s.get(o)) << s.key;
  }
}

TEST(Config, EveryFlagNamesItsKeyAndEnvInHelp) {
  auto r = Parse({"--help"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 0);
  for (const auto& s : config::Settings()) {
    if (s.flag.empty()) continue;
    EXPECT_THAT(r.error().message, HasSubstr(s.flag)) << s.key;
    EXPECT_THAT(r.error().message, HasSubstr(s.Env())) << s.key;
  }
  EXPECT_THAT(r.error().message, HasSubstr("--print-config"));
}

TEST(Config, TailKeepSettingsFromEverySource) {
  AgentOptions d = Ok({});
  EXPECT_TRUE(d.sampling_keep_errors);
  EXPECT_EQ(d.sampling_slow_ms, 1000u);
  EXPECT_TRUE(d.sampling_slow_routes.empty());
  EXPECT_EQ(d.sampling_tail_max_spans, 10000u);
  EXPECT_EQ(d.sampling_tail_max_wait_ms, 10000u);
  // The file's per-route thresholds are a map; the env a comma list; a flag repeats.
  TempFile f("sampling:\n  ratio: 0.01\n  slow_ms: 250\n  slow_routes: {\"/report\": 2000, \"/static/*\": 0}\n");
  AgentOptions o = Ok({"--config", f.path(), "--sampling-keep-errors", "off"}, {{"THREADLINE_SAMPLING_TAIL_MAX_SPANS", "500"}});
  EXPECT_FALSE(o.sampling_keep_errors);
  EXPECT_EQ(o.sampling_slow_ms, 250u);
  EXPECT_EQ(o.sampling_slow_routes, (std::vector<std::string>{"/report=2000", "/static/*=0"}));
  EXPECT_EQ(o.sampling_tail_max_spans, 500u);
  EXPECT_EQ(Ok({}, {{"THREADLINE_SAMPLING_SLOW_ROUTES", "/a=1,/b/{id}=20"}}).sampling_slow_routes,
            (std::vector<std::string>{"/a=1", "/b/{id}=20"}));
  EXPECT_EQ(Ok({"--sampling-slow-route", "/x=5", "--sampling-slow-route", "/y=6"}).sampling_slow_routes,
            (std::vector<std::string>{"/x=5", "/y=6"}));
  const std::string yaml = FormatEffectiveConfig(o);
  EXPECT_THAT(yaml, HasSubstr("  slow_routes: {\"/report\": \"2000\", \"/static/*\": \"0\"}  # file"));
  TempFile again(yaml);
  EXPECT_EQ(Ok({"--config", again.path()}).sampling_slow_routes, o.sampling_slow_routes);
  EXPECT_NE(Fails({"--sampling-slow-route", "/x"}).find("is not ROUTE=MS"), std::string::npos);
  EXPECT_NE(Fails({"--sampling-slow-route", "/x=soon"}).find("is not ROUTE=MS"), std::string::npos);
  EXPECT_NE(Fails({"--sampling-tail-max-wait-ms", "5"}).find("out of range"), std::string::npos);
  auto route = config::ParseSlowRoute("/a=b=7");
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->first, "/a=b");
  EXPECT_EQ(route->second, 7u);
}

TEST(Config, WebViewAddressAndStoreBounds) {
  AgentOptions o = Ok({"--ui-address", "[::1]:9999", "--ui-max-traces", "500"}, {{"THREADLINE_UI_MAX_MB", "4"}});
  EXPECT_EQ(o.ui_address, "[::1]:9999");
  EXPECT_EQ(o.trace_store_max_traces, 500u);
  EXPECT_EQ(o.trace_store_max_mb, 4u);
  EXPECT_EQ(Ok({}, {{"THREADLINE_UI_ADDRESS", "OFF"}}).ui_address, "");
  EXPECT_NE(Fails({"--ui-address", "9465"}).find("--ui-address: \"9465\" is not host:port"), std::string::npos);
  EXPECT_NE(Fails({"--ui-address", ""}).find("is empty (use off to disable)"), std::string::npos);
  EXPECT_NE(Fails({"--ui-max-mb", "0"}).find("out of range"), std::string::npos);
}

}  // namespace
}  // namespace threadline

namespace threadline {
namespace {

TEST(Config, ContextPropagationListsMechanisms) {
  AgentOptions d = Ok({});
  EXPECT_TRUE(d.context_tcp) << "on by default (where the probe says the callbacks work)";
  EXPECT_TRUE(d.context_headers);
  AgentOptions flag = Ok({"--context-propagation", "tcp"});
  EXPECT_TRUE(flag.context_tcp);
  EXPECT_FALSE(flag.context_headers);
  AgentOptions both = Ok({"--context-propagation", "headers,TCP"});
  EXPECT_TRUE(both.context_tcp && both.context_headers);
  AgentOptions repeated = Ok({"--context-propagation", "headers", "--context-propagation", "tcp"});
  EXPECT_TRUE(repeated.context_tcp && repeated.context_headers);
  AgentOptions env = Ok({}, {{"THREADLINE_CONTEXT_PROPAGATION", "none"}});
  EXPECT_FALSE(env.context_tcp || env.context_headers);
  EXPECT_THAT(Fails({"--context-propagation", "udp"}), HasSubstr("is not tcp, headers or none"));
  EXPECT_THAT(Fails({"--context-propagation", "none,tcp"}), HasSubstr("cannot be listed with"));
  // inject stays the headers' policy; forcing it on while leaving headers out is a contradiction.
  EXPECT_THAT(Fails({"--context-propagation", "tcp", "--inject", "on"}), HasSubstr("contradicts"));
  AgentOptions off = Ok({"--context-propagation", "tcp", "--inject", "off"});
  EXPECT_EQ(off.inject, Toggle::kOff);
}

}  // namespace
}  // namespace threadline
