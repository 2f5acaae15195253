#include "agent/protocols/describe.h"

#include <type_traits>

#include "agent/protocols/http1/describe.h"
#include "agent/protocols/mysql/describe.h"
#include "agent/protocols/postgres/describe.h"
#include "agent/protocols/redis/describe.h"
#include "agent/protocols/http2/describe.h"

namespace threadline {

void Describe(const Record& record, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out) {
  std::visit(
      [&](const auto& detail) {
        using T = std::decay_t<decltype(detail)>;
        if constexpr (std::is_same_v<T, http1::Exchange>) {
          http1::Describe(detail, role, conn, options, out);
        } else if constexpr (std::is_same_v<T, postgres::Operation>) {
          postgres::Describe(detail, role, conn, options, out);
        } else if constexpr (std::is_same_v<T, redis::Operation>) {
          redis::Describe(detail, role, conn, options, out);
        } else if constexpr (std::is_same_v<T, http2::StreamRecord>) {
          http2::Describe(detail, record.outcome, role, conn, options, out);
        } else if constexpr (std::is_same_v<T, mysql::Operation>) {
          mysql::Describe(detail, role, conn, options, out);
        }
      },
      record.detail);
}

}  // namespace threadline
