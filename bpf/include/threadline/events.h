/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one header shared by the BPF programs (bpf/) and the C++ agent.
 *
 * Rules: fixed-width types only, explicit padding so both compilers agree on every offset,
 * enums written as fixed numbers (never reorder, only append), and every struct's size is
 * checked by a static assertion on the C++ side (agent/ingest/event_types.h).
 * Bump TL_EVENT_ABI_VERSION when a layout changes.
 */
#ifndef THREADLINE_EVENTS_H
#define THREADLINE_EVENTS_H

#if defined(__bpf__) || defined(__BPF__)
/* vmlinux.h provides __u8 ... __u64 */
#else
#include <linux/types.h>
#endif

#define TL_EVENT_ABI_VERSION 9 /* 3: TL_EV_TRACE_CTX and the injection maps (append-only)
                                * 4: what names a process at exec (tl_proc_event.start_boottime_ns,
                                *    exe_name, args)
                                * 5: ctx_tag in data events (was padding), the context maps
                                * 6: the TCP header option (TL_CTX_REMOTE, range_len,
                                *    tl_inject_out.flags, enum tl_tcpopt_stat)
                                * 7: tl_conn_state.ignored = TL_IGNORED_SHED, tl_shed_counts,
                                *    TL_INJ_SKIP_SHED
                                * 8: established connections shed and resumed at a request
                                *    boundary: TL_CLOSE_SHED, tl_conn_state.shed_from,
                                *    tl_shed_counts.established/resumed
                                * 9: SSL_write without its return probe: tl_conn_state.tls_write_fits,
                                *    tl_tls_call.writes/no_return (were padding) */

/* Upper bound of the payload prefix one data event carries. The effective bound is set at load
 * time (rodata capture_bytes, <= this) and must be a power of two for the verifier masks. */
#define TL_MAX_CAPTURE 16384
/* iovec entries walked per readv/writev/sendmsg/recvmsg (and per message of sendmmsg/recvmmsg),
 * until the capture bound is reached: the kernel's own UIO_MAXIOV, so in practice every entry.
 * Bytes in later entries are counted in the full size but not captured (the event is then
 * marked TL_DATA_F_IOV_LIMIT). */
#define TL_MAX_IOV 1024
/* messages of one sendmmsg/recvmmsg turned into events; later ones advance the stream position
 * (userspace sees a gap) and are counted as TL_DROP_MMSG_LIMIT. */
#define TL_MAX_MMSG 8
#define TL_COMM_LEN 16
#define TL_FILENAME_LEN 128
#define TL_EXE_NAME_LEN 64
#define TL_ARGS_LEN 256 /* power of two: the verifier's bound on the argv copy */

enum tl_event_type {
	TL_EV_CONN_OPEN = 1,
	TL_EV_CONN_CLOSE = 2,
	TL_EV_DATA = 3,
	TL_EV_PROC_EXEC = 4,
	TL_EV_PROC_EXIT = 5,
	TL_EV_CONN_STATE = 6,
	TL_EV_PROC_FORK = 7,
	TL_EV_TRACE_CTX = 8, /* ABI 3: trace ids the kernel chose for a request (struct tl_trace_ctx_event) */
};

enum tl_direction {
	TL_DIR_EGRESS = 0,  /* the traced process sent these bytes */
	TL_DIR_INGRESS = 1, /* the traced process received these bytes */
};

enum tl_role {
	TL_ROLE_UNKNOWN = 0, /* first seen on data; userspace resolves it from listening sockets */
	TL_ROLE_CLIENT = 1,  /* connect() */
	TL_ROLE_SERVER = 2,  /* accept()/accept4() */
};

/* How the kernel side learned about a connection. */
enum tl_conn_source {
	TL_SRC_CONNECT = 1,
	TL_SRC_ACCEPT = 2,
	TL_SRC_FIRST_IO = 3, /* opened before the agent started, or via an fd we did not see made */
};

enum tl_close_reason {
	TL_CLOSE_SYSCALL = 1,     /* close() */
	TL_CLOSE_FD_REPLACED = 2, /* dup2/dup3 over it, or a new socket found behind the same fd */
	TL_CLOSE_PROC_EXIT = 3,   /* reported by userspace when the process exits */
	TL_CLOSE_EVICTED = 4,     /* userspace table limit (never sent by the kernel) */
	TL_CLOSE_SHED = 5,        /* ABI 8: still open, but shed under the CPU budget at a request
	                           * boundary (capture/shed_turn.bpf.h); if it is resumed, a new
	                           * generation opens (source TL_SRC_FIRST_IO) */
};

enum tl_syscall {
	TL_SYS_READ = 1,
	TL_SYS_WRITE = 2,
	TL_SYS_READV = 3,
	TL_SYS_WRITEV = 4,
	TL_SYS_SENDTO = 5,
	TL_SYS_RECVFROM = 6,
	TL_SYS_SENDMSG = 7,
	TL_SYS_RECVMSG = 8,
	TL_SYS_SENDMMSG = 9,
	TL_SYS_RECVMMSG = 10,
	TL_SYS_SENDFILE = 11,
	TL_SYS_CONNECT = 12,
	TL_SYS_ACCEPT = 13,
	TL_SYS_ACCEPT4 = 14,
	TL_SYS_CLOSE = 15,
	/* TLS plaintext, seen at the library boundary (uprobes), not at a syscall. */
	TL_SYS_SSL_READ = 16,  /* OpenSSL family SSL_read / SSL_read_ex */
	TL_SYS_SSL_WRITE = 17, /* OpenSSL family SSL_write / SSL_write_ex */
	TL_SYS_GO_TLS_READ = 18,  /* Go crypto/tls (*Conn).Read */
	TL_SYS_GO_TLS_WRITE = 19, /* Go crypto/tls (*Conn).Write */
};

/* Data event flags. */
#define TL_DATA_F_IOV_LIMIT 0x1u   /* more iovecs than TL_MAX_IOV: capture stopped early */
#define TL_DATA_F_READ_FAULT 0x2u  /* bpf_probe_read_user failed: captured bytes are zeros */
#define TL_DATA_F_NO_PAYLOAD 0x4u  /* sendfile: the bytes come from a file, none captured */
/* TLS plaintext (syscall TL_SYS_SSL_*): `pos` is a position in the connection's plaintext
 * stream, which is the only stream of a TLS connection userspace ever sees (its ciphertext is
 * never sent as data, and its close event reports plaintext totals). */
#define TL_DATA_F_TLS 0x8u

/* Reasons the kernel side dropped or could not produce something. A per-CPU array indexed by
 * these (map "drops") counts them; the agent reports them by CPU and reason. */
enum tl_drop_reason {
	TL_DROP_DATA_RING_FULL = 0,
	TL_DROP_CTRL_RING_FULL = 1,
	TL_DROP_CONN_MAP_FULL = 2,
	TL_DROP_ARGS_MAP_FULL = 3,
	TL_DROP_READ_FAULT = 4,
	TL_DROP_MMSG_LIMIT = 5,
	TL_DROP_SELECT_MAP_FULL = 6,
	TL_DROP_TLS_CALLS_FULL = 7, /* an SSL_* call not followed: too many threads inside one */
	TL_DROP_TLS_NO_CONN = 8,    /* TLS plaintext with no TCP connection found for it */
	TL_DROP__COUNT = 9,
};

struct tl_conn_id {
	__u32 tgid;
	__s32 fd;
	__u64 gen; /* unique per socket seen on (tgid, fd): fd reuse never merges two connections */
};

/* Addresses in network byte order. AF_INET uses the first 4 bytes of each address. An AF_INET6
 * socket talking IPv4 keeps family AF_INET6 and a v4-mapped address (::ffff:a.b.c.d). */
struct tl_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host byte order; the local port of the traced process */
	__u16 dport; /* host byte order; the peer's port */
	__u16 family;
	__u16 _pad;
};

struct tl_event_header {
	__u32 type;   /* enum tl_event_type */
	__u32 cpu;
	__u64 ts_ns;  /* bpf_ktime_get_boot_ns() */
	__u32 tgid;
	__u32 tid;
};

struct tl_conn_event {
	struct tl_event_header hdr;
	struct tl_conn_id id;
	struct tl_tuple tuple;
	__u64 bytes[2];    /* per enum tl_direction; final counts on close (plaintext for TLS) */
	__u8 role;         /* enum tl_role */
	__u8 source;       /* enum tl_conn_source (open) */
	__u8 close_reason; /* enum tl_close_reason (close) */
	__u8 ignored;      /* open: filtered out by --port; tracked for cleanup only */
	__u8 _pad[4];
	char comm[TL_COMM_LEN];
};

struct tl_data_event {
	struct tl_event_header hdr;
	struct tl_conn_id id;
	__u64 pos;          /* stream position of the first byte, per connection and direction */
	__u64 enter_ts_ns;  /* syscall entry (boot clock) */
	__u32 size;         /* bytes the syscall moved */
	__u32 captured;     /* bytes of payload that follow this header (<= size) */
	__u8 direction;     /* enum tl_direction */
	__u8 syscall;       /* enum tl_syscall */
	__u8 role;          /* enum tl_role, as known to the kernel */
	__u8 flags;         /* TL_DATA_F_* */
	__u32 ctx_tag;      /* ABI 4: who this request is for (TL_CTX_TAG_*); 0 on most events */
	/* followed by `captured` bytes of payload */
};

struct tl_state_event {
	struct tl_event_header hdr;
	struct tl_conn_id id;
	__s32 old_state; /* TCP_* */
	__s32 new_state;
};

struct tl_proc_event {
	struct tl_event_header hdr;
	__u32 ppid;       /* exec: parent tgid; fork: parent tgid; exit: 0 */
	__s32 exit_code;  /* exit only */
	char comm[TL_COMM_LEN];
	char filename[TL_FILENAME_LEN]; /* exec only: the path as passed to exec */
	/* ABI 4, exec only: enough to name a short-lived process that is gone (and reaped, so
	 * /proc/<pid> with it) before userspace reads /proc: a client like curl can live ~10 ms. */
	__u64 start_boottime_ns; /* the process's start (boot clock): /proc/<pid>/stat field 22 */
	__u16 args_len;          /* bytes of args used */
	__u8 _pad2[6];
	char exe_name[TL_EXE_NAME_LEN]; /* the executable's file name (mm->exe_file), NUL-terminated;
	                                 * empty when it does not fit */
	char args[TL_ARGS_LEN];  /* argv, NUL-separated as in /proc/<pid>/cmdline, cut at
	                          * TL_ARGS_LEN - 1 bytes */
};

/* --- maps shared with userspace (keys and values) --- */

struct tl_fd_key {
	__u32 tgid;
	__s32 fd;
};

/* Value of the "conns" map: what the kernel knows of a tracked socket fd. */
struct tl_conn_state {
	__u64 gen;
	__u64 file;  /* struct file * behind the fd: a different one means the fd was reused */
	__u64 sk;    /* struct sock * */
	__u64 bytes[2];     /* socket (for TLS: ciphertext) stream positions, by direction */
	struct tl_tuple tuple;
	__u8 role;
	__u8 ignored; /* TL_IGNORED_*: tracked only to stay quiet (0: captured) */
	__u8 tls;     /* TLS seen on it: ciphertext is never emitted, plaintext comes from uprobes */
	__u8 ctx_dir; /* ABI 4: direction of the last data event (TL_CTX_DIR_*): a change starts a
	               * request or a response (bpf/capture/ctx.bpf.h) */
	__u8 h2;      /* ABI 6: this client wrote the HTTP/2 preface: the TCP option marks the
	               * writes that open with a HEADERS frame (bpf/capture/tcp_option.bpf.h) */
	__u8 _pad;
	__u16 tls_write_fits; /* ABI 9: the largest SSL_write seen to fit one TLS record on this
	                       * connection (bpf/capture/tls.bpf.h tls__learn_fits): a write no
	                       * larger goes without its return probe */
	__u64 tls_bytes[2]; /* plaintext stream positions, by direction */
	__u64 shed_from;    /* ABI 8: bytes[0] + bytes[1] when it was last shed (0: shed when new):
	                     * what it moved while shed is counted from there */
	__u32 shed_hash;    /* ABI 8: shed__conn_hash of the tuple, computed when it is enrolled */
	__u32 _pad2;
};

/* tl_conn_state.ignored */
#define TL_IGNORED_PORT 1 /* outside the --port selection */
#define TL_IGNORED_SHED 2 /* ABI 7: shed under the CPU budget: no events at all (capture/shed.bpf.h);
                          * ABI 8: also set on an established connection at a request boundary */

/* ABI 7: value of the per-CPU "shed_counts" map: what connections shed under the CPU budget
 * did not have captured. */
struct tl_shed_counts {
	__u64 conns; /* connections shed when first seen */
	__u64 bytes; /* the bytes shed connections moved, not captured (added when each is closed
	              * or resumed) */
	__u64 established; /* ABI 8: times an established connection was shed at a request boundary */
	__u64 resumed;     /* ABI 8: times a shed connection was captured again at a request
	                    * boundary (a new generation, met mid-life) */
	__u64 requests;    /* ABI 8: requests not captured: the request boundaries shed connections
	                    * of known role crossed (a connection shed when new and never resumed
	                    * counts its first request too) */
};

/* Value of the "sock_conns" map (key: struct sock *), for TCP state changes, which arrive in
 * softirq context where the current task says nothing about the owner. */
struct tl_sock_owner {
	struct tl_conn_id id;
};

/* TLS (bpf/capture/tls.bpf.h): an SSL_* call in progress on a thread (map "tls_calls", key
 * pid_tgid), stashed by the entry uprobe for the return uprobe. */
struct tl_tls_call {
	__u64 ssl;      /* SSL * */
	__u64 buf;      /* plaintext buffer */
	__u64 out_len;  /* size_t * (readbytes/written) of the _ex variants, 0 otherwise */
	__u64 enter_ts; /* boot clock */
	__u32 num;      /* buffer length */
	__s32 fd;       /* socket the library did I/O on during this call; -1 until seen */
	__u8 direction; /* enum tl_direction: write = egress, read = ingress */
	__u8 ex;        /* 1: SSL_read_ex/SSL_write_ex (returns 1/0, size via out_len) */
	__u8 emitted;   /* the plaintext went out already, at the first write underneath */
	__u8 session;   /* stashed by a uprobe session's entry: its return runs the same program */
	__u8 writes;    /* ABI 9: socket writes under the call: 1 = one, whole, of one record's
	                 * size; 2 = anything else */
	__u8 no_return; /* ABI 9: no return probe (a session's SSL_write on a socket known to take
	                 * it in one record): `fd` is set at the entry, only that socket's I/O is
	                 * under the call, and its socket writes end it (tls__on_socket_write) */
	__u8 _pad[2];
	__u64 ret_addr; /* session: the call's return address (how the program tells its return) */
};

/* The cookie of each OpenSSL site of a uprobe session link (tls.bpf.h tls__session, set by
 * agent/kernel/tls_attacher.cpp): which call the site is. */
enum tl_tls_cookie {
	TL_TLS_COOKIE_EGRESS = 1, /* SSL_write family; else SSL_read */
	TL_TLS_COOKIE_EX = 2,     /* the _ex convention (size via out_len) */
};

/* Key of the "tls_conns" map: which socket fd an SSL object was last seen using. */
struct tl_tls_key {
	__u32 tgid;
	__u32 _pad;
	__u64 ssl;
};

/* --- Who a request is for (ABI 4; bpf/capture/ctx.bpf.h) ---
 *
 * The kernel follows which server request each unit of work is handling and, when a client
 * request starts, decides whose child it is. A request or response starts where a connection's
 * data changes direction (tl_conn_state.ctx_dir), whatever the protocol:
 *   ingress on a server connection: a server request starts; it gets a sequence number and is
 *     "in flight" until the first byte of its response (or the connection's close);
 *   egress on a client connection: a client request starts; its sender is asked whose request
 *     it is working for (ctx__sender_context).
 * The data event that starts the request carries the verdict in ctx_tag: the kind in the top 4
 * bits (enum tl_ctx_tag_kind), the server request's sequence number in the low 28 (0: none).
 * Userspace builds the parent edges from these tags (agent/spans), so the kernel and the spans
 * never disagree, and ids that travel on the wire (injection, TCP option) come from the same
 * decision. */
#define TL_CTX_TAG_SEQ_MASK 0x0fffffffu
#define TL_CTX_TAG(kind, seq) (((__u32)(kind) << 28) | ((seq) & TL_CTX_TAG_SEQ_MASK))
#define TL_CTX_TAG_KIND(tag) ((__u32)(tag) >> 28)
#define TL_CTX_TAG_SEQ(tag) ((__u32)(tag) & TL_CTX_TAG_SEQ_MASK)

enum tl_ctx_tag_kind {
	TL_CTAG_NONE = 0,       /* the event starts nothing (or was not classified) */
	TL_CTAG_SERVER = 1,     /* ingress: server request number `seq` starts in these bytes */
	TL_CTAG_ROOT = 2,       /* egress: client request; its sender handles no server request */
	TL_CTAG_AMBIGUOUS = 3,  /* egress: the sending thread has several server requests in flight
	                         * (or is an event loop: it had before) and nothing decides */
	TL_CTAG_THREAD = 4,     /* egress: for request `seq`, the sending thread's only one (a thread
	                         * that never had two in flight: thread per request) */
	TL_CTAG_GOROUTINE = 5,  /* egress: for request `seq`, the sending goroutine's (inherited
	                         * from the goroutine that started it, or handed over with the
	                         * *http.Request to the transport's writer) */
	TL_CTAG_NODE_ASYNC = 6, /* egress: for request `seq`, as the Node helper paired the sockets */
	TL_CTAG_ENDED = 7,      /* egress: the goroutine's (or pairing's) request was answered already */
	TL_CTAG_UNTRACKED = 8,  /* egress: a Go process whose goroutines are not followed: the thread
	                         * says nothing about the request */
};

/* tl_conn_state.ctx_dir */
#define TL_CTX_DIR_INGRESS 1
#define TL_CTX_DIR_EGRESS 2

/* Value of "ctx_reqs" (key: struct tl_fd_key of the server connection): its request in flight. */
struct tl_ctx_request {
	__u64 gen;
	__u8 trace_id[16];  /* the server span's ids, when propagation was on as it started */
	__u8 span_id[8];
	__u32 seq;
	__u32 reader_tid;   /* the thread that read its first bytes (whose count it is in) */
	__u8 trace_flags;
	__u8 has_ids;
	__u8 _pad[6];
};

/* Value of "ctx_threads" (key: pid_tgid): the server requests a thread read and that are in
 * flight. A thread that ever had two at once multiplexes (an event loop): from then on it is
 * never trusted alone, since a timer or another request's callback may send at any time. */
struct tl_ctx_thread {
	__s32 inflight;
	__s32 last_fd;  /* the last request it read (its only one, when it never multiplexed) */
	__u32 last_seq;
	__u8 multiplexed;
	__u8 _pad[3];
};

/* Value of "ctx_goroutines" (key: struct tl_go_tls_key {tgid, g}) and "ctx_handoff" (key:
 * {tgid, *http.Request}): the server request a goroutine works for. seq 0: whatever request is
 * in flight on fd (the goroutine serving that connection); children and hand-offs resolve it
 * to the number in flight when they are made. fd -1: none (a hand-off from a goroutine without
 * a request, so the writer does not keep an older one). */
struct tl_go_ctx {
	__s32 fd;
	__u32 seq;
};

/* Value of "ctx_node_pairs" (key: struct tl_fd_key of a Node process's client socket): the
 * server socket whose request the helper said the next request on it is for, and that
 * request's number when the helper said so (in_fd -1: for no request). */
struct tl_ctx_pair {
	__s32 in_fd;
	__u32 seq;
};

/* What the Node helper writes (one write(2) of exactly this size to its marker fd, a /dev/null
 * it opened; key "node_markers": tgid -> that fd) before a request is sent on out_fd: the request
 * is for the one in flight on in_fd (-1: for none). Read at the write's exit; the fd must be the
 * one the agent registered for the process, so no other write is ever taken for a marker. */
#define TL_NODE_MARKER_MAGIC 0x314e4c54u /* "TLN1" */
struct tl_node_marker {
	__u32 magic;
	__s32 in_fd;
	__s32 out_fd;
	__u32 _pad;
};

/* Value of "go_procs" (key: tgid): Go processes. */
#define TL_GO_PROC_TRACKED 0x1u /* goroutine probes attached: the goroutine rule applies */

/* What ctx__sender_context answers, for the wire (injection, TCP option). */
struct tl_sender_ctx {
	__u8 trace_id[16]; /* the parent server span's ids (has_ids) */
	__u8 span_id[8];
	__u32 seq;
	__u8 kind;         /* enum tl_ctx_tag_kind */
	__u8 trace_flags;
	__u8 has_ids;
	__u8 _pad;
};

/* Go goroutine probes (bpf/capture/go_ctx.bpf.h): offsets into net/http's private structs for a
 * range of Go versions, passed as the BPF cookie (8 bytes) of each probe; userspace attaches
 * none to a binary whose version is not in its table. */
struct tl_go_ctx_layout {
	__u8 flags;           /* TL_GO_LAYOUT_VALID, TL_GO_SITE_STACK_CHECK (below) */
	__u8 conn_rwc;        /* http.conn: the data word of rwc (net.Conn) */
	__u8 conn_tls_state;  /* http.conn: tlsState (*tls.ConnectionState; set: rwc is a *tls.Conn) */
	__u8 tls_conn_iface;  /* tls.Conn: the data word of its net.Conn */
	__u8 netconn_fd;      /* net.conn: fd *netFD */
	__u8 netfd_sysfd;     /* netFD: pfd.Sysfd */
	__u8 treq_request;    /* http.transportRequest: the embedded *Request */
	__u8 netfd_family;    /* netFD: family (sotype is the next int): checked to be a TCP socket */
};

/* --- trace ids on the wire (ABI 3; bpf/capture/trace_ctx.bpf.h and bpf/inject.bpf.c) ---
 *
 * While propagation is on, the kernel chooses the ids of the spans whose context travels on the
 * wire, because it writes them into outgoing requests before userspace sees anything:
 *   server: a server request that starts (see above) on a connection whose first bytes are an
 *           HTTP/1.x request gets a server span id and a trace id (taken from a traceparent in
 *           the captured bytes, else new), kept with the request in flight ("ctx_reqs").
 *   client: the sk_msg program that inserts a traceparent into an outgoing request asks the
 *           sender's context (ctx__sender_context): a parent's trace id, a new one for a root,
 *           nothing at all (no injection) when ambiguous; it makes the client span id and leaves
 *           the ids for the write syscall's exit ("inject_out").
 * A new trace's sampled flag is the agent's ratio rule on its trace id (sample__flags in
 * bpf/inject/ids.bpf.h, agent/spans/sampler.h); a continued one keeps its parent's.
 * Both are reported as a TL_EV_TRACE_CTX event right before the data event they belong to,
 * tied to it by (connection, syscall entry time, thread); userspace builds those spans with
 * exactly these ids. */
/* The line inserted after the request line: "traceparent: 00-" 32 hex "-" 16 hex "-" 2 hex CRLF. */
#define TL_TRACEPARENT_LINE_LEN 70

enum tl_ctx_kind {
	TL_CTX_SERVER = 1, /* ids of the server span whose request starts in this read */
	TL_CTX_CLIENT = 2, /* ids the kernel put on the wire for the request this write sent
	                    * (injected traceparent and/or TCP option: see the flags) */
	/* ABI 6: a context that arrived in a TCP header option on this (server) connection, read
	 * by this read: the request whose first byte lies in [pos, pos + range_len) of the ingress
	 * stream is the child of span_id in trace_id (parent_span_id unused). */
	TL_CTX_REMOTE = 3,
};
#define TL_CTX_F_FROM_HEADER 0x1u /* trace id (and parent_span_id) from a traceparent in the bytes */
#define TL_CTX_F_HAS_PARENT 0x2u  /* parent_span_id is set */
#define TL_CTX_F_INJECTED 0x4u    /* ABI 6, client: traceparent was inserted into the request */
#define TL_CTX_F_TCP_OPTION 0x8u  /* ABI 6, client: the ids go out in a TCP header option;
                                   * server: trace id and parent came from one */

struct tl_trace_ctx_event {
	struct tl_event_header hdr;
	struct tl_conn_id id;
	__u64 pos;         /* stream position of the data event's first byte */
	__u64 enter_ts_ns; /* the data event's enter_ts_ns (the matching key, with hdr.tid) */
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 parent_span_id[8];
	__u8 kind;        /* enum tl_ctx_kind */
	__u8 direction;   /* enum tl_direction of the data event */
	__u8 flags;       /* TL_CTX_F_* */
	__u8 trace_flags; /* W3C trace-flags (bit 0: sampled) */
	__u32 ctx_tag;    /* ABI 4: server: TL_CTX_TAG(TL_CTAG_SERVER, seq); client: the sender's
	                   * context the parent came from (kind and seq, as in data events) */
	__u32 range_len;  /* ABI 6, TL_CTX_REMOTE: length of the stream range at pos; else 0 */
	__u32 _pad;
};

/* Value of "inject_out" (key: pid_tgid): ids the sk_msg program wrote, for the write's exit. */
struct tl_inject_out {
	__u8 trace_id[16];
	__u8 span_id[8];        /* the client span */
	__u8 parent_span_id[8]; /* the thread's server span, when it had one */
	__u64 enter_ts_ns;      /* entry of the syscall that sent it: stale entries never match */
	__u8 trace_flags;
	__u8 has_parent;
	__u8 flags;             /* ABI 6: TL_CTX_F_INJECTED, TL_CTX_F_TCP_OPTION */
	__u8 _pad[1];
	__u32 ctx_tag;          /* ABI 4: the sender's context (kind, seq) the ids came from */
};

/* Per-CPU counters of the injection object ("inject_stats"), indexed by these. */
enum tl_inject_stat {
	TL_INJ_INJECTED = 0,
	TL_INJ_ENROLLED = 1,           /* sockets put in the sockhash */
	TL_INJ_ENROLL_FAILED = 2,
	TL_INJ_NOT_SELECTED = 3,       /* connect() by a process not traced or excluded */
	TL_INJ_SKIP_NOT_HTTP1 = 4,     /* bytes are not the start of an HTTP/1.x request (TLS, h2, other) */
	TL_INJ_SKIP_HAS_HEADER = 5,    /* the request already carries traceparent */
	TL_INJ_SKIP_PARTIAL = 6,       /* header block not complete in this message */
	TL_INJ_SKIP_CONTINUATION = 7,  /* not the first message of the syscall */
	TL_INJ_SKIP_TLS = 8,           /* connection known as TLS, or inside an SSL_* call */
	TL_INJ_SKIP_NO_SYSCALL = 9,    /* no traced syscall in progress on this thread */
	TL_INJ_FAIL_PUSH = 10,         /* bpf_msg_push_data failed */
	TL_INJ_FAIL_PULL = 11,         /* bpf_msg_pull_data failed */
	TL_INJ_SKIP_OFF = 12,          /* enrolled socket while injection is switched off */
	TL_INJ_SKIP_EXCLUDED = 13,     /* sending process no longer traced (excluded since) */
	TL_INJ_SPLIT_SEND = 14,        /* injected, but the message could not be made one piece
	                                * again (over TL_PULL_MAX): sent in pieces (Nagle may delay) */
	TL_INJ_SKIP_AMBIGUOUS = 15,    /* ABI 4: the sender's context is ambiguous (or not followed,
	                                * or its parent has no kernel ids): no context on the wire */
	TL_INJ_SKIP_SHED = 16,         /* ABI 7: the connection is shed under the CPU budget (no
	                                * client span: the callee starts its own trace) */
	TL_INJ__COUNT = 17,
};

/* --- trace context in a TCP header option (ABI 6; bpf/tcp_option.bpf.c, bpf/tcpopt/) ---
 * Per-CPU counters ("tcpopt_stats"), written by the sockops program and the capture path. */
enum tl_tcpopt_stat {
	TL_OPT_ARMED = 0,          /* client sockets of traced processes set up to carry options */
	TL_OPT_STARTS = 1,         /* request starts recorded at a send (a context to put on the wire) */
	TL_OPT_WRITTEN = 2,        /* options written on a segment carrying a request's first byte */
	TL_OPT_REWRITTEN = 3,      /* ... again, on a retransmission of that segment */
	TL_OPT_NO_ROOM = 4,        /* a segment that should carry one had no option space left */
	TL_OPT_SHARED_SEGMENT = 5, /* a request start whose segment carried an earlier start's option */
	TL_OPT_UNWRITTEN = 6,      /* request starts acknowledged without any option written */
	TL_OPT_OTHER_WRITER = 7,   /* the segment already had our option kind (another agent wrote) */
	TL_OPT_TX_FULL = 8,        /* more request starts in flight on a socket than tracked */
	TL_OPT_SKIP_AMBIGUOUS = 9, /* the sender's context was ambiguous: no option on the wire */
	TL_OPT_PARSED = 10,        /* options of ours parsed on arriving segments */
	TL_OPT_MALFORMED = 11,     /* option kind 25 with a length we do not know */
	TL_OPT_RX_FULL = 12,       /* arrived options dropped: too many unread on one socket */
	TL_OPT_READ = 13,          /* arrived options tied to a traced process's read (reported) */
	TL_OPT__COUNT = 14,
};

/* Go crypto/tls (bpf/capture/go_tls.bpf.h): where a *tls.Conn keeps its socket fd, for a range
 * of Go versions. Userspace picks it from its table by the binary's Go version and passes it, as
 * 8 bytes, in the BPF cookie of each Go TLS uprobe: the probe of a binary whose version is not in
 * the table is never attached, so the BPF side never guesses a layout. */
struct tl_go_tls_layout {
	__u16 conn_iface_data; /* tls.Conn: offset of the data word of its net.Conn interface */
	__u16 netconn_fd;      /* *net.TCPConn (net.conn): offset of fd *netFD */
	__u16 netfd_sysfd;     /* netFD: offset of pfd.Sysfd */
	__u16 flags;           /* TL_GO_* below; a cookie without TL_GO_LAYOUT_VALID is refused */
};
#define TL_GO_LAYOUT_VALID 0x1u
/* The probe sits on the `jbe` of the function's stack-bound check, not on its entry: taken (CF
 * or ZF set), the stack grows and the function restarts from its entry, so that pass is ignored
 * and each call is seen once. */
#define TL_GO_SITE_STACK_CHECK 0x2u

/* A Go (*tls.Conn).Read in progress (map "go_tls_calls"), keyed by goroutine: a goroutine that
 * blocks in Read is parked and may resume on another thread, and the thread meanwhile runs other
 * goroutines, so the thread id would mix calls up. */
struct tl_go_tls_key {
	__u32 tgid;
	__u32 _pad;
	__u64 g; /* runtime.g of the goroutine (register R14 in Go's register ABI) */
};
struct tl_go_tls_call {
	__u64 buf;
	__u64 len;
	__u64 enter_ts;
	__s32 fd;
	__u32 _pad;
};

/* Value of the "selected" map (keys: tgid). */
struct tl_selection {
	__u32 flags; /* TL_SEL_* */
	__u32 _pad;
};
#define TL_SEL_TRACE 0x1u    /* produce events for this process */
#define TL_SEL_EXCLUDE 0x2u  /* never trace (the agent itself, user exclusions) */
#define TL_SEL_INHERIT 0x4u  /* children (fork) get the same selection */

#endif /* THREADLINE_EVENTS_H */
