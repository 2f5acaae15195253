#include "agent/protocols/db/semconv.h"

#include <string>

namespace threadline::db {

void Describe(const OperationFacts& f, Role role, const ConnectionInfo& c, ExchangeView& out) {
  const bool server = role == Role::kServer;
  Attributes& attrs = out.attributes;
  attrs.reserve(18);

  if (!f.name.empty()) out.name = std::string(f.name);
  else if (!f.summary.empty()) out.name = std::string(f.summary);
  else if (!f.operation.empty()) out.name = std::string(f.operation);
  else out.name = std::string(f.system);

  AddString(attrs, "db.system.name", f.system);
  if (!f.db_namespace.empty()) AddString(attrs, "db.namespace", f.db_namespace);
  if (!f.operation.empty()) AddString(attrs, "db.operation.name", f.operation);
  if (!f.collection.empty()) AddString(attrs, "db.collection.name", f.collection);
  if (!f.stored_procedure.empty()) AddString(attrs, "db.stored_procedure.name", f.stored_procedure);
  if (!f.summary.empty()) AddString(attrs, "db.query.summary", f.summary);
  if (!f.query_text.empty()) {
    AddString(attrs, "db.query.text", f.query_text);
    if (f.query_truncated) attrs.push_back({"threadline.db.query.truncated", true});
  }
  if (f.batch_size >= 2) attrs.push_back({"db.operation.batch.size", f.batch_size});

  // The database's address as the connection shows it (the client's configured host name is
  // not on the wire).
  if (c.tuple_known) {
    AddString(attrs, "server.address", (server ? c.tuple.local : c.tuple.remote).ToString());
    attrs.push_back({"server.port", static_cast<int64_t>(server ? c.tuple.local_port : c.tuple.remote_port)});
  }
  AddNetworkPeer(c, attrs);
  if (server && c.tuple_known) {
    AddString(attrs, "client.address", c.tuple.remote.ToString());
    attrs.push_back({"client.port", static_cast<int64_t>(c.tuple.remote_port)});
  }

  if (!f.status_code.empty()) AddString(attrs, "db.response.status_code", f.status_code);
  if (f.error) {
    out.status = StatusCode::kError;
    AddString(attrs, "error.type", f.status_code.empty() ? std::string_view("_OTHER") : f.status_code);
  }
  if (f.request_incomplete) attrs.push_back({"threadline.request.incomplete", true});
  if (f.response_incomplete) attrs.push_back({"threadline.response.incomplete", true});
  AddOutcome(f.outcome, out);
}

void FillFromSql(const SqlAnalysis& a, const DbDescribeOptions& options, OperationFacts& f) {
  f.summary = a.summary;
  f.operation = a.operation;
  f.collection = a.collection;
  f.stored_procedure = a.stored_procedure;
  if (options.query_text) f.query_text = a.sanitized;
  f.query_truncated = f.query_truncated || a.sanitized_truncated;
}

}  // namespace threadline::db
