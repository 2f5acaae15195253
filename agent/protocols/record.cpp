#include "agent/protocols/record.h"

namespace threadline {

std::string_view ToString(ProtocolId p) {
  switch (p) {
    case ProtocolId::kHttp1: return "http1";
    case ProtocolId::kPostgres: return "postgres";
    case ProtocolId::kRedis: return "redis";
    case ProtocolId::kHttp2: return "http2";
    case ProtocolId::kMySql: return "mysql";
  }
  return "unknown";
}

}  // namespace threadline
