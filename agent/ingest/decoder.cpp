#include "agent/ingest/decoder.h"

#include <algorithm>
#include <cstring>

namespace threadline {

namespace {

template <typename T>
const T* As(std::span<const uint8_t> record) {
  // Ring-buffer records are 8-byte aligned, so the cast is safe for the kernel's layouts.
  return reinterpret_cast<const T*>(record.data());
}

std::string_view CStr(const char* s, size_t max) { return {s, strnlen(s, max)}; }

ConnId IdOf(const tl_conn_id& id) { return ConnId{id.tgid, id.fd, id.gen}; }

Tuple TupleOf(const tl_tuple& t) {
  Tuple out;
  out.family = t.family;
  out.local = IpAddress::FromKernel(t.family, t.saddr);
  out.remote = IpAddress::FromKernel(t.family, t.daddr);
  out.local_port = t.sport;
  out.remote_port = t.dport;
  return out;
}

}  // namespace

std::string_view ToString(DecodeStatus s) {
  switch (s) {
    case DecodeStatus::kOk: return "ok";
    case DecodeStatus::kTooShort: return "too_short";
    case DecodeStatus::kUnknownType: return "unknown_type";
    case DecodeStatus::kBadLength: return "bad_length";
  }
  return "?";
}

DecodeStatus DecodeEvent(std::span<const uint8_t> record, EventSink& sink) {
  if (record.size() < sizeof(tl_event_header)) return DecodeStatus::kTooShort;
  const auto* hdr = As<tl_event_header>(record);
  switch (hdr->type) {
    case TL_EV_DATA: {
      if (record.size() < sizeof(tl_data_event)) return DecodeStatus::kTooShort;
      const auto* e = As<tl_data_event>(record);
      if (e->captured > e->size || sizeof(tl_data_event) + e->captured > record.size())
        return DecodeStatus::kBadLength;
      DataEvent d;
      d.id = IdOf(e->id);
      d.ts_ns = hdr->ts_ns;
      d.enter_ts_ns = e->enter_ts_ns;
      d.tid = hdr->tid;
      d.direction = e->direction == TL_DIR_INGRESS ? Direction::kIngress : Direction::kEgress;
      d.role = static_cast<Role>(e->role <= TL_ROLE_SERVER ? e->role : uint8_t{TL_ROLE_UNKNOWN});
      d.syscall = e->syscall;
      d.flags = e->flags;
      d.ctx_tag = e->ctx_tag;
      d.pos = e->pos;
      d.size = e->size;
      d.payload = record.subspan(sizeof(tl_data_event), e->captured);
      sink.OnData(d);
      return DecodeStatus::kOk;
    }
    case TL_EV_CONN_OPEN:
    case TL_EV_CONN_CLOSE: {
      if (record.size() < sizeof(tl_conn_event)) return DecodeStatus::kTooShort;
      const auto* e = As<tl_conn_event>(record);
      if (hdr->type == TL_EV_CONN_OPEN) {
        ConnOpenEvent o;
        o.id = IdOf(e->id);
        o.ts_ns = hdr->ts_ns;
        o.tid = hdr->tid;
        o.tuple = TupleOf(e->tuple);
        o.role = static_cast<Role>(e->role <= TL_ROLE_SERVER ? e->role : uint8_t{TL_ROLE_UNKNOWN});
        o.source = static_cast<ConnSource>(e->source);
        o.ignored = e->ignored != 0;
        o.comm = CStr(e->comm, TL_COMM_LEN);
        sink.OnConnOpen(o);
      } else {
        ConnCloseEvent c;
        c.id = IdOf(e->id);
        c.ts_ns = hdr->ts_ns;
        c.tid = hdr->tid;
        c.bytes[0] = e->bytes[0];
        c.bytes[1] = e->bytes[1];
        c.reason = static_cast<CloseReason>(e->close_reason);
        sink.OnConnClose(c);
      }
      return DecodeStatus::kOk;
    }
    case TL_EV_CONN_STATE: {
      if (record.size() < sizeof(tl_state_event)) return DecodeStatus::kTooShort;
      const auto* e = As<tl_state_event>(record);
      sink.OnConnState(ConnStateEvent{IdOf(e->id), hdr->ts_ns, e->old_state, e->new_state});
      return DecodeStatus::kOk;
    }
    case TL_EV_PROC_EXEC:
    case TL_EV_PROC_FORK:
    case TL_EV_PROC_EXIT: {
      if (record.size() < sizeof(tl_proc_event)) return DecodeStatus::kTooShort;
      const auto* e = As<tl_proc_event>(record);
      auto comm = CStr(e->comm, TL_COMM_LEN);
      if (hdr->type == TL_EV_PROC_EXEC) {
        const size_t args_len = std::min<size_t>(e->args_len, TL_ARGS_LEN);
        sink.OnProcExec(ProcExecEvent{hdr->tgid, e->ppid, hdr->ts_ns, comm,
                                      CStr(e->filename, TL_FILENAME_LEN), e->start_boottime_ns,
                                      CStr(e->exe_name, TL_EXE_NAME_LEN),
                                      std::string_view(e->args, args_len)});
      } else if (hdr->type == TL_EV_PROC_FORK) {
        sink.OnProcFork(ProcForkEvent{hdr->tgid, e->ppid, hdr->ts_ns, comm});
      } else {
        sink.OnProcExit(ProcExitEvent{hdr->tgid, e->exit_code, hdr->ts_ns, comm});
      }
      return DecodeStatus::kOk;
    }
    case TL_EV_TRACE_CTX: {
      if (record.size() < sizeof(tl_trace_ctx_event)) return DecodeStatus::kTooShort;
      const auto* e = As<tl_trace_ctx_event>(record);
      TraceCtxEvent t;
      t.id = IdOf(e->id);
      t.ts_ns = hdr->ts_ns;
      t.tid = hdr->tid;
      t.pos = e->pos;
      t.enter_ts_ns = e->enter_ts_ns;
      std::memcpy(t.trace_id.data(), e->trace_id, 16);
      std::memcpy(t.span_id.data(), e->span_id, 8);
      std::memcpy(t.parent_span_id.data(), e->parent_span_id, 8);
      t.kind = e->kind;
      t.direction = e->direction == TL_DIR_INGRESS ? Direction::kIngress : Direction::kEgress;
      t.flags = e->flags;
      t.trace_flags = e->trace_flags;
      t.ctx_tag = e->ctx_tag;
      t.range_len = e->range_len;
      sink.OnTraceContext(t);
      return DecodeStatus::kOk;
    }
    default:
      return DecodeStatus::kUnknownType;
  }
}

}  // namespace threadline
