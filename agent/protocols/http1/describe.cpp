#include "agent/protocols/http1/describe.h"

#include "agent/protocols/http/semconv.h"

namespace threadline::http1 {

void Describe(const Exchange& e, Role role, const ConnectionInfo& conn,
              const DescribeOptions& options, ExchangeView& out) {
  if (!e.request) return;  // the span builder never describes an exchange without a request
  const Message& req = *e.request;
  http::ExchangeFacts f;
  f.method = req.method;
  f.target = req.target;
  f.authority = req.headers.Get("host");
  f.version = req.version_minor == 0 ? "1.0" : "1.1";
  f.user_agent = req.headers.Get("user-agent");
  if (role == Role::kServer) f.forwarded_for = req.headers.Get("x-forwarded-for");
  f.request_body_bytes = req.body_bytes;
  f.request_incomplete = req.missing_bytes();
  if (e.response) {
    const Message& resp = *e.response;
    f.has_response = true;
    f.status_code = resp.status_code;
    f.response_body_bytes = resp.body_bytes;
    f.response_body_known = resp.framing != Framing::kNone || resp.body_bytes > 0;
    f.response_incomplete = resp.missing_bytes();
    if (e.outcome == Outcome::kUpgraded) f.upgrade = resp.headers.Get("upgrade");
  }
  f.outcome = e.outcome;
  http::Describe(f, role, conn, options, out);
}

}  // namespace threadline::http1
