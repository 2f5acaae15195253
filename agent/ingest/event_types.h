// Typed, decoded kernel events: the value types that cross ingest -> conn -> protocols.
//
// Decoding copies the fixed-size header fields into these structs and keeps the payload as a
// view into the ring buffer; a DataEvent's payload is valid only during the sink callback
// (no allocation per event on the hot path; whoever keeps bytes copies them).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "threadline/events.h"

namespace threadline {

// IPv4 or IPv6 address. IPv4-mapped IPv6 (::ffff:a.b.c.d) is normalised to IPv4 so the same
// peer looks the same whichever socket family carried it.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};  // IPv4 uses bytes[0..3]
  bool is_v4 = true;

  static IpAddress V4(const uint8_t* b);
  static IpAddress V6(const uint8_t* b);  // normalises v4-mapped
  static IpAddress FromKernel(uint16_t family, const uint8_t* b);
  static constexpr size_t kTextSize = 46;  // INET6_ADDRSTRLEN
  // The text form written into `buf`, a view of it: no string made (span attributes format the
  // connection's addresses for every span).
  std::string_view Format(char (&buf)[kTextSize]) const;
  std::string ToString() const { char buf[kTextSize]; return std::string(Format(buf)); }
  bool operator==(const IpAddress&) const = default;
};

struct Tuple {
  IpAddress local;
  IpAddress remote;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  uint16_t family = 0;  // socket family (AF_INET / AF_INET6) as the process opened it
  std::string ToString() const;  // "10.0.0.1:43210 -> 10.0.0.2:80"
  bool operator==(const Tuple&) const = default;
};

struct ConnId {
  uint32_t tgid = 0;
  int32_t fd = -1;
  uint64_t gen = 0;
  bool operator==(const ConnId&) const = default;
  std::string ToString() const;  // "pid/fd#gen"
};

struct ConnIdHash {
  size_t operator()(const ConnId& c) const noexcept {
    uint64_t h = (static_cast<uint64_t>(c.tgid) << 32) ^ static_cast<uint32_t>(c.fd);
    h ^= c.gen + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return std::hash<uint64_t>{}(h);
  }
};

enum class Direction : uint8_t { kEgress = TL_DIR_EGRESS, kIngress = TL_DIR_INGRESS };
enum class Role : uint8_t { kUnknown = TL_ROLE_UNKNOWN, kClient = TL_ROLE_CLIENT, kServer = TL_ROLE_SERVER };
enum class ConnSource : uint8_t { kConnect = TL_SRC_CONNECT, kAccept = TL_SRC_ACCEPT, kFirstIo = TL_SRC_FIRST_IO };
enum class CloseReason : uint8_t {
  kSyscall = TL_CLOSE_SYSCALL,
  kFdReplaced = TL_CLOSE_FD_REPLACED,
  kProcessExit = TL_CLOSE_PROC_EXIT,
  kEvicted = TL_CLOSE_EVICTED,
  kShed = TL_CLOSE_SHED,  // shed at a request boundary under the CPU budget (still open)
};

std::string_view ToString(Direction d);
std::string_view ToString(Role r);
std::string_view ToString(ConnSource s);
std::string_view ToString(CloseReason r);
std::string_view SyscallName(uint8_t tl_syscall);
// The kind of a ctx_tag (enum tl_ctx_tag_kind) as logs and spans name it: "server", "root",
// "ambiguous", "thread", "goroutine", "node_async", "ended", "untracked"; "" for none.
std::string_view CtxTagKindName(uint32_t kind);

struct ConnOpenEvent {
  ConnId id;
  uint64_t ts_ns = 0;  // boot clock
  uint32_t tid = 0;
  Tuple tuple;
  Role role = Role::kUnknown;
  ConnSource source = ConnSource::kConnect;
  bool ignored = false;   // outside the --port selection: no data will follow
  std::string_view comm;  // view into the event; copy to keep
};

struct ConnCloseEvent {
  ConnId id;
  uint64_t ts_ns = 0;
  uint32_t tid = 0;
  uint64_t bytes[2] = {0, 0};  // by Direction
  CloseReason reason = CloseReason::kSyscall;
};

struct DataEvent {
  ConnId id;
  uint64_t ts_ns = 0;        // syscall exit (boot clock)
  uint64_t enter_ts_ns = 0;  // syscall entry (boot clock)
  uint32_t tid = 0;
  Direction direction = Direction::kEgress;
  Role role = Role::kUnknown;
  uint8_t syscall = 0;  // enum tl_syscall
  uint8_t flags = 0;    // TL_DATA_F_* (TL_DATA_F_TLS: TLS plaintext, pos in the plaintext stream)
  // Who the request these bytes start is for (TL_CTX_TAG_*, events.h "Who a request is for");
  // 0 on events that start no request.
  uint32_t ctx_tag = 0;
  uint64_t pos = 0;     // stream position of payload[0]
  uint32_t size = 0;    // bytes the syscall moved; size - payload.size() were not captured
  std::span<const uint8_t> payload;
};

struct ConnStateEvent {
  ConnId id;
  uint64_t ts_ns = 0;
  int32_t old_state = 0;
  int32_t new_state = 0;
};

struct ProcExecEvent {
  uint32_t pid = 0;
  uint32_t ppid = 0;
  uint64_t ts_ns = 0;
  std::string_view comm;
  std::string_view filename;
  uint64_t start_boottime_ns = 0;  // the process's start, boot clock (0: unknown)
  std::string_view exe_name;       // file name of the new executable (empty: unknown)
  std::string_view args;           // argv NUL-separated, possibly cut (empty: unknown)
};

struct ProcForkEvent {
  uint32_t pid = 0;  // the child
  uint32_t ppid = 0;
  uint64_t ts_ns = 0;
  std::string_view comm;
};

struct ProcExitEvent {
  uint32_t pid = 0;
  int32_t exit_code = 0;
  uint64_t ts_ns = 0;
  std::string_view comm;
};

// Trace ids the kernel chose for a request, or a context a TCP header option brought (see
// tl_trace_ctx_event in events.h). Arrives right before the data event it belongs to: same
// connection, enter_ts_ns and tid.
struct TraceCtxEvent {
  ConnId id;
  uint64_t ts_ns = 0;
  uint32_t tid = 0;
  uint64_t pos = 0;
  uint64_t enter_ts_ns = 0;
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  std::array<uint8_t, 8> parent_span_id{};
  uint8_t kind = 0;  // enum tl_ctx_kind
  Direction direction = Direction::kEgress;
  uint8_t flags = 0;  // TL_CTX_F_*
  uint8_t trace_flags = 0;
  uint32_t ctx_tag = 0;  // server: its number; client: the sender's context the parent came from
  uint32_t range_len = 0;  // TL_CTX_REMOTE: the stream range [pos, pos + range_len)
};

// Receives decoded events. Implementations must not block: they run on the ring-buffer
// consumer thread.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void OnConnOpen(const ConnOpenEvent&) {}
  virtual void OnConnClose(const ConnCloseEvent&) {}
  virtual void OnData(const DataEvent&) {}
  virtual void OnConnState(const ConnStateEvent&) {}
  virtual void OnProcExec(const ProcExecEvent&) {}
  virtual void OnProcFork(const ProcForkEvent&) {}
  virtual void OnProcExit(const ProcExitEvent&) {}
  virtual void OnTraceContext(const TraceCtxEvent&) {}
};

static_assert(sizeof(tl_event_header) == 24);
static_assert(sizeof(tl_conn_id) == 16);
static_assert(sizeof(tl_tuple) == 40);
static_assert(sizeof(tl_conn_event) == 24 + 16 + 40 + 16 + 8 + 16);
static_assert(sizeof(tl_data_event) == 24 + 16 + 8 + 8 + 4 + 4 + 4 + 4);
static_assert(sizeof(tl_state_event) == 24 + 16 + 8);
static_assert(sizeof(tl_proc_event) == 24 + 8 + 16 + 128 + 8 + 8 + 64 + 256);
static_assert(sizeof(tl_conn_state) == 8 + 8 + 8 + 16 + 40 + 8 + 16 + 8 + 8);
static_assert(sizeof(tl_shed_counts) == 5 * 8);
static_assert(sizeof(tl_tls_call) == 8 * 4 + 4 + 4 + 8 + 8);
static_assert(sizeof(tl_tls_key) == 16);
static_assert(sizeof(tl_trace_ctx_event) == 24 + 16 + 8 + 8 + 16 + 8 + 8 + 8 + 8);
static_assert(sizeof(tl_ctx_request) == 8 + 16 + 8 + 4 + 4 + 8);
static_assert(sizeof(tl_ctx_thread) == 16);
static_assert(sizeof(tl_go_ctx) == 8);
static_assert(sizeof(tl_ctx_pair) == 8);
static_assert(sizeof(tl_node_marker) == 16);
static_assert(sizeof(tl_sender_ctx) == 16 + 8 + 4 + 4);
static_assert(sizeof(tl_go_ctx_layout) == 8);
static_assert(sizeof(tl_inject_out) == 16 + 8 + 8 + 8 + 8);

}  // namespace threadline
