#include "exporter/otlp_config.h"

#include <charconv>
#include <cstdlib>

#include "agent/common/text.h"

namespace threadline {

namespace {

constexpr std::string_view kGeneric = "OTEL_EXPORTER_OTLP_";
constexpr std::string_view kTraces = "OTEL_EXPORTER_OTLP_TRACES_";

// A variable's trimmed value; empty counts as unset (specification).
struct Found {
  std::string name;
  std::string value;
};
std::optional<Found> Get(const EnvLookup& env, const std::string& name) {
  std::optional<std::string> v = env(name);
  if (!v.has_value()) return std::nullopt;
  std::string_view t = TrimSpace(*v);
  if (t.empty()) return std::nullopt;
  return Found{name, std::string(t)};
}

// OTEL_EXPORTER_OTLP_TRACES_<suffix>, else OTEL_EXPORTER_OTLP_<suffix>.
std::optional<Found> GetOtlp(const EnvLookup& env, std::string_view suffix) {
  if (auto v = Get(env, std::string(kTraces) + std::string(suffix))) return v;
  return Get(env, std::string(kGeneric) + std::string(suffix));
}

Error Invalid(const Found& f, std::string_view why) {
  return Error{f.name + "=\"" + f.value + "\": " + std::string(why)};
}

Result<int64_t> ParsePositive(const Found& f) {
  int64_t v = 0;
  const char* end = f.value.data() + f.value.size();
  auto [ptr, ec] = std::from_chars(f.value.data(), end, v);
  if (ec != std::errc() || ptr != end) return Invalid(f, "not an integer");
  if (v <= 0) return Invalid(f, "must be greater than 0");
  return v;
}

Result<bool> ParseBool(const Found& f) {
  const std::string v = AsciiLower(f.value);
  if (v == "true") return true;
  if (v == "false") return false;
  return Invalid(f, "must be true or false");
}

bool HasScheme(std::string_view url, std::string_view scheme) {
  return url.size() > scheme.size() && AsciiLower(url.substr(0, scheme.size())) == scheme;
}

}  // namespace

std::string_view ToString(OtlpProtocol p) {
  return p == OtlpProtocol::kGrpc ? "grpc" : "http/protobuf";
}

std::string_view ToString(OtlpCompression c) {
  return c == OtlpCompression::kGzip ? "gzip" : "none";
}

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

EnvLookup WithOverrides(std::map<std::string, std::string> overrides, EnvLookup base) {
  return [overrides = std::move(overrides), base = std::move(base)](
             const std::string& name) -> std::optional<std::string> {
    if (auto it = overrides.find(name); it != overrides.end()) return it->second;
    return base ? base(name) : std::nullopt;
  };
}

Result<OtlpHeaders> ParseOtlpHeaders(std::string_view text, std::string_view variable) {
  return ParseKeyValueList(text, variable);
}

Result<GrpcTarget> ParseGrpcEndpoint(std::string_view endpoint, bool insecure) {
  GrpcTarget t;
  std::string_view rest = endpoint;
  if (HasScheme(endpoint, "https://")) {
    t.tls = true;
    rest.remove_prefix(8);
  } else if (HasScheme(endpoint, "http://")) {
    t.tls = false;
    rest.remove_prefix(7);
  } else if (endpoint.find("://") != std::string_view::npos) {
    return Error{"gRPC endpoint \"" + std::string(endpoint) + "\": scheme must be http or https"};
  } else {
    t.tls = !insecure;
  }
  // A lone trailing slash is harmless ("http://host:4317/"); a real path is not something a
  // gRPC channel can use (the method path is fixed by the service).
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    return Error{"gRPC endpoint \"" + std::string(endpoint) + "\": must be [scheme://]host:port, without a path"};
  }
  if (rest.empty()) return Error{"gRPC endpoint \"" + std::string(endpoint) + "\": no host"};
  t.target = std::string(rest);
  return t;
}

Result<OtlpExporterConfig> OtlpExporterConfigFromEnv(const EnvLookup& env) {
  OtlpExporterConfig c;

  if (auto f = GetOtlp(env, "PROTOCOL")) {
    const std::string p = AsciiLower(f->value);
    if (p == "grpc") {
      c.protocol = OtlpProtocol::kGrpc;
    } else if (p == "http/protobuf") {
      c.protocol = OtlpProtocol::kHttpProtobuf;
    } else if (p == "http/json") {
      return Invalid(*f, "http/json is not supported by this exporter; use grpc or http/protobuf");
    } else {
      return Invalid(*f, "must be grpc or http/protobuf");
    }
  }
  const bool grpc = c.protocol == OtlpProtocol::kGrpc;

  if (auto f = GetOtlp(env, "INSECURE")) {
    ASSIGN_OR_RETURN(c.insecure, ParseBool(*f));
  }

  if (auto f = Get(env, std::string(kTraces) + "ENDPOINT")) {
    c.endpoint = f->value;  // signal-specific: as is
  } else if (auto g = Get(env, std::string(kGeneric) + "ENDPOINT")) {
    c.endpoint = g->value;
    if (!grpc) c.endpoint += c.endpoint.back() == '/' ? "v1/traces" : "/v1/traces";
  } else {
    c.endpoint = grpc ? "http://localhost:4317" : "http://localhost:4318/v1/traces";
  }
  if (grpc) {
    if (Result<GrpcTarget> t = ParseGrpcEndpoint(c.endpoint, c.insecure); !t.ok()) return t.error();
  } else if (!HasScheme(c.endpoint, "http://") && !HasScheme(c.endpoint, "https://")) {
    return Error{"OTLP/HTTP endpoint \"" + c.endpoint + "\": must start with http:// or https://"};
  }

  if (auto f = GetOtlp(env, "HEADERS")) {
    ASSIGN_OR_RETURN(c.headers, ParseOtlpHeaders(f->value, f->name));
  }
  if (auto f = GetOtlp(env, "TIMEOUT")) {
    ASSIGN_OR_RETURN(int64_t ms, ParsePositive(*f));
    c.timeout = std::chrono::milliseconds(ms);
  }
  if (auto f = GetOtlp(env, "COMPRESSION")) {
    const std::string v = AsciiLower(f->value);
    if (v == "gzip") {
      c.compression = OtlpCompression::kGzip;
    } else if (v == "none") {
      c.compression = OtlpCompression::kNone;
    } else {
      return Invalid(*f, "must be gzip or none");
    }
  }
  if (auto f = GetOtlp(env, "CERTIFICATE")) c.certificate_file = f->value;
  if (auto f = GetOtlp(env, "CLIENT_KEY")) c.client_key_file = f->value;
  if (auto f = GetOtlp(env, "CLIENT_CERTIFICATE")) c.client_certificate_file = f->value;
  if (c.client_key_file.empty() != c.client_certificate_file.empty()) {
    return Error{"OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY and _CLIENT_CERTIFICATE must be set together (mTLS)"};
  }

  BatchExporterOptions& b = c.batch;
  if (auto f = Get(env, "OTEL_BSP_MAX_QUEUE_SIZE")) {
    ASSIGN_OR_RETURN(int64_t v, ParsePositive(*f));
    b.max_queue_size = static_cast<size_t>(v);
  }
  if (auto f = Get(env, "OTEL_BSP_SCHEDULE_DELAY")) {
    ASSIGN_OR_RETURN(int64_t v, ParsePositive(*f));
    b.schedule_delay = std::chrono::milliseconds(v);
  }
  std::optional<Found> batch_size = Get(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
  if (batch_size) {
    ASSIGN_OR_RETURN(int64_t v, ParsePositive(*batch_size));
    b.max_export_batch_size = static_cast<size_t>(v);
  }
  if (b.max_export_batch_size > b.max_queue_size) {
    if (batch_size) {
      return Invalid(*batch_size, "must not exceed OTEL_BSP_MAX_QUEUE_SIZE (" +
                                      std::to_string(b.max_queue_size) + ")");
    }
    b.max_export_batch_size = b.max_queue_size;  // only the queue was made smaller
  }
  if (auto f = Get(env, "OTEL_BSP_EXPORT_TIMEOUT")) {
    ASSIGN_OR_RETURN(int64_t v, ParsePositive(*f));
    b.export_timeout = std::chrono::milliseconds(v);
  }
  return c;
}

}  // namespace threadline
