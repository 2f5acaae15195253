// SPDX-License-Identifier: GPL-2.0-only
/*
 * threadline traceparent injection: a sockops program on the cgroup v2 root enrolls the TCP
 * client sockets of traced processes in a sockhash, and an sk_msg program on that sockhash
 * inserts one `traceparent: 00-<trace>-<span>-<flags>\r\n` line after the request line of
 * outgoing plaintext HTTP/1.x requests that have none. Nothing else in the bytes changes.
 *
 * Why these hooks: kprobes/fentry are missing or forbidden on locked-down kernels and
 * bpf_probe_write_user is refused, so the request cannot be changed in the application's
 * memory. sk_msg sees the bytes of every sendmsg/write on an enrolled socket after they were
 * copied from the application, and may grow them (bpf_msg_push_data).
 *
 * Enrolment: TCP_CONNECT_CB runs inside connect(), so the current task is the application: its
 * selection is checked there and the socket cookie remembered. ACTIVE_ESTABLISHED_CB (often in
 * softirq, where the current task is unrelated) then enrolls the remembered socket; a sockhash
 * accepts only established sockets. Enrolling changes the socket's send and receive paths
 * (tcp_bpf), which is why only traced processes' client sockets are enrolled and why the agent
 * runs a canary (agent/kernel/inject_canary.cpp) before switching injection on.
 *
 * Ids: see events.h (struct tl_trace_ctx_event). The sk_msg program asks the sender's context
 * (ctx__sender_context_g, bpf/capture/ctx.bpf.h: the request its goroutine or thread works for,
 * with the ids the capture object gave it when it was read), takes the parent's trace id (a new
 * one for a root; no injection at all when the context is ambiguous), makes the client span id,
 * and leaves both in inject_out for the capture object's write exit, which reports them tied to
 * the connection and stream position.
 *
 * Never injects (each reason counted in inject_stats): bytes that are not one complete HTTP/1.x
 * request head (TLS records, HTTP/2, other protocols, a head longer than TL_SCAN_BYTES or split
 * over sends), a request that already has traceparent, a connection known to be TLS or a write
 * made inside an SSL_* call, a message that is not the first of its syscall (large writes are
 * split into several messages: only the first can start a request), a process that is not
 * traced or is excluded.
 *
 * Maps shared with the capture object (selected, io_args, conns, tls_calls: capture/shared.bpf.h;
 * ctx_reqs, ctx_threads, ctx_goroutines, go_procs, ctx_node_pairs, ctx_unclassified:
 * capture/ctx.bpf.h;
 * inject_out: inject/ids.bpf.h) are declared by the headers both objects include and
 * replaced by the capture object's maps before load (agent/kernel/injector.cpp,
 * bpf_map__reuse_fd).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "threadline/events.h"

#include "capture/shared.bpf.h"
#include "capture/ctx.bpf.h"
#include "inject/ids.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define TL_SK_PASS 1
#define TL_SK_DROP 0
/* Largest message made contiguous after an injection (one order-3 page allocation). */
#define TL_PULL_MAX 32768

/* Run-time switches (.bss, written by userspace). */
#define TL_INJECT_OFF 0
#define TL_INJECT_CANARY_ONLY 1 /* only the agent's canary (canary_tgid) is enrolled/rewritten */
#define TL_INJECT_ON 2
__u32 inject_mode = TL_INJECT_OFF;
__u32 canary_tgid = 0;

/* --- own maps (the capture object's come from capture/shared.bpf.h and inject/ids.bpf.h) --- */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* socket cookie */
	__type(value, __u64);
} inj_sockets SEC(".maps");

/* Sockets whose connect() a traced process made, until they are established. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);   /* socket cookie */
	__type(value, __u32); /* tgid */
} inj_pending SEC(".maps");

/* The syscall (entry time) whose first message each thread last examined: later messages of
 * the same syscall are continuations. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);   /* pid_tgid */
	__type(value, __u64); /* enter_ts */
} inj_msg_seen SEC(".maps");

struct tl_inj_scratch {
	__u8 buf[TL_SCAN_BYTES + 64];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_inj_scratch);
} inj_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TL_INJ__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} inject_stats SEC(".maps");

static __always_inline void stat__count(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&inject_stats, &what);
	if (c)
		*c += 1;
}

static __always_inline bool inject__is_canary(__u32 tgid)
{
	return canary_tgid != 0 && tgid == canary_tgid;
}

SEC("sockops")
int tl_inject_sockops(struct bpf_sock_ops *skops)
{
	if (inject_mode == TL_INJECT_OFF)
		return 1;
	if (skops->family != 2 /* AF_INET */ && skops->family != 10 /* AF_INET6 */)
		return 1;
	if (skops->op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
		/* Process context: connect() of the application. */
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		if (!inject__is_canary(tgid) && (inject_mode != TL_INJECT_ON || !proc__selected(tgid))) {
			stat__count(TL_INJ_NOT_SELECTED);
			return 1;
		}
		__u64 cookie = bpf_get_socket_cookie(skops);
		bpf_map_update_elem(&inj_pending, &cookie, &tgid, BPF_ANY);
	} else if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		__u64 cookie = bpf_get_socket_cookie(skops);
		if (!bpf_map_lookup_elem(&inj_pending, &cookie))
			return 1;
		bpf_map_delete_elem(&inj_pending, &cookie);
		if (bpf_sock_hash_update(skops, &inj_sockets, &cookie, BPF_NOEXIST))
			stat__count(TL_INJ_ENROLL_FAILED);
		else
			stat__count(TL_INJ_ENROLLED);
	}
	return 1;
}

/* "traceparent: 00-" + 32 hex + "-" + 16 hex + "-" + 2 hex + "\r\n" */
static __always_inline __u8 hex__digit(__u8 v)
{
	v &= 15;
	return v < 10 ? '0' + v : 'a' + v - 10;
}

static __always_inline void line__format(__u8 *line, const __u8 *trace_id, const __u8 *span_id,
					 __u8 trace_flags)
{
	/* "traceparent: 00-" written as two little-endian words (no string constant). */
	const __u64 w0 = TL_W4('t', 'r', 'a', 'c') | (TL_W4('e', 'p', 'a', 'r') << 32);
	const __u64 w1 = TL_W4('e', 'n', 't', ':') | (TL_W4(' ', '0', '0', '-') << 32);
	__builtin_memcpy(line, &w0, 8);
	__builtin_memcpy(line + 8, &w1, 8);
	for (int k = 0; k < 16; k++) {
		line[16 + 2 * k] = hex__digit(trace_id[k] >> 4);
		line[17 + 2 * k] = hex__digit(trace_id[k]);
	}
	line[48] = '-';
	for (int k = 0; k < 8; k++) {
		line[49 + 2 * k] = hex__digit(span_id[k] >> 4);
		line[50 + 2 * k] = hex__digit(span_id[k]);
	}
	line[65] = '-';
	line[66] = hex__digit(trace_flags >> 4);
	line[67] = hex__digit(trace_flags);
	line[68] = '\r';
	line[69] = '\n';
}

/* Is buf[0, line_end) "METHOD SP target SP HTTP/1.x CRLF"? (The method prefix was checked.) */
static __always_inline bool request_line__ok(const struct tl_scan *s)
{
	__u32 end = s->line_end;
	if (end < 16)
		return false;
	/* ... " HTTP/1.0\r\n" or " HTTP/1.1\r\n" at the end */
	return scan__at(s, end - 11) == ' ' && scan__at(s, end - 10) == 'H' &&
	       scan__at(s, end - 9) == 'T' && scan__at(s, end - 8) == 'T' &&
	       scan__at(s, end - 7) == 'P' && scan__at(s, end - 6) == '/' &&
	       scan__at(s, end - 5) == '1' && scan__at(s, end - 4) == '.' &&
	       (scan__at(s, end - 3) == '0' || scan__at(s, end - 3) == '1');
}

SEC("sk_msg")
int tl_inject_msg(struct sk_msg_md *msg)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	bool canary = inject__is_canary(tgid);
	if (!canary && inject_mode != TL_INJECT_ON) {
		stat__count(TL_INJ_SKIP_OFF);
		return TL_SK_PASS;
	}
	if (!canary && !proc__selected(tgid)) {
		stat__count(TL_INJ_SKIP_EXCLUDED);
		return TL_SK_PASS;
	}

	/* Only the first message of a syscall can start a request. The traced syscall in
	 * progress (stashed by the capture object at entry) identifies the syscall. The canary
	 * (the agent, never traced) has no stash: the later messages of its large writes are
	 * body bytes, which the request check below rejects. */
	__u64 enter_ts = 0, io_g = 0;
	__s32 io_fd = -1;
	if (!canary) {
		struct tl_io_args *a = io_args__find(pid_tgid);
		if (!a) {
			stat__count(TL_INJ_SKIP_NO_SYSCALL);
			return TL_SK_PASS;
		}
		enter_ts = a->enter_ts;
		io_fd = a->fd;
		io_g = a->g;
		__u64 *seen = bpf_map_lookup_elem(&inj_msg_seen, &pid_tgid);
		if (seen && *seen == enter_ts) {
			stat__count(TL_INJ_SKIP_CONTINUATION);
			return TL_SK_PASS;
		}
		bpf_map_update_elem(&inj_msg_seen, &pid_tgid, &enter_ts, BPF_ANY);
		struct tl_fd_key key = {.tgid = tgid, .fd = a->fd};
		struct tl_conn_state *st = bpf_map_lookup_elem(&conns, &key);
		if ((st && st->tls) ||
		    (io_args__tls_call(a) && bpf_map_lookup_elem(&tls_calls, &pid_tgid))) {
			stat__count(TL_INJ_SKIP_TLS);
			return TL_SK_PASS;
		}
		if (st && st->ignored == TL_IGNORED_SHED) {
			stat__count(TL_INJ_SKIP_SHED);
			return TL_SK_PASS;
		}
	}

	__u32 size = msg->size;
	if (size < 16) {
		stat__count(TL_INJ_SKIP_NOT_HTTP1);
		return TL_SK_PASS;
	}
	__u32 n = size > TL_SCAN_BYTES ? TL_SCAN_BYTES : size;
	/* Make the first n bytes contiguous (a no-op when the first element holds them). */
	if (bpf_msg_pull_data(msg, 0, n, 0)) {
		stat__count(TL_INJ_FAIL_PULL);
		return TL_SK_PASS;
	}
	void *data = msg->data, *data_end = msg->data_end;
	if (data + 8 > data_end) {
		stat__count(TL_INJ_FAIL_PULL);
		return TL_SK_PASS;
	}
	if (!http__method_prefix(*(__u64 *)data)) {
		stat__count(TL_INJ_SKIP_NOT_HTTP1);
		return TL_SK_PASS;
	}
	__u32 zero = 0;
	struct tl_inj_scratch *sc = bpf_map_lookup_elem(&inj_scratch, &zero);
	if (!sc)
		return TL_SK_PASS;
	__u32 avail = data_end - data;
	if (n > avail)
		n = avail;
	/* n is in [8, TL_SCAN_BYTES]; spelled so the verifier can see it. */
	n = ((n - 1) & (TL_SCAN_BYTES - 1)) + 1;
	if (bpf_probe_read_kernel(sc->buf, n, data)) {
		stat__count(TL_INJ_FAIL_PULL);
		return TL_SK_PASS;
	}
	struct tl_scan scan;
	scan__headers(&scan, sc->buf, n);
	if (scan.bad || !request_line__ok(&scan)) {
		stat__count(TL_INJ_SKIP_NOT_HTTP1);
		return TL_SK_PASS;
	}
	if (scan.tp_count) {
		stat__count(TL_INJ_SKIP_HAS_HEADER);
		return TL_SK_PASS;
	}
	if (!scan.block_end) {
		stat__count(TL_INJ_SKIP_PARTIAL);
		return TL_SK_PASS;
	}

	/* Ids: the sender's server request (its flags too), else a new trace sampled by the
	 * agent's rule (sample__flags): the header carries the decision downstream. Nothing when
	 * the sender's context is ambiguous (or its parent started before ids were on): a new
	 * trace id would contradict the parent the agent may still find by evidence. */
	struct tl_inject_out out = {};
	struct tl_inject_out *chosen = canary ? NULL : bpf_map_lookup_elem(&inject_out, &pid_tgid);
	if (chosen && chosen->enter_ts_ns == enter_ts) {
		/* This send's entry already chose the request's ids (the TCP header option carries
		 * them too): one request, one set of ids on the wire. */
		out = *chosen;
	} else {
		out.enter_ts_ns = enter_ts;
		if (!canary) {
			struct tl_sender_ctx sc;
			__u8 kind = ctx__sender_context_g(pid_tgid, io_fd, io_g, &sc);
			if (ctx__kind_sends_nothing(kind) || (ctx__kind_has_parent(kind) && !sc.has_ids)) {
				stat__count(TL_INJ_SKIP_AMBIGUOUS);
				return TL_SK_PASS;
			}
			out.ctx_tag = TL_CTX_TAG(kind, sc.seq);
			if (ctx__kind_has_parent(kind)) {
				__builtin_memcpy(out.trace_id, sc.trace_id, 16);
				__builtin_memcpy(out.parent_span_id, sc.span_id, 8);
				out.trace_flags = sc.trace_flags;
				out.has_parent = 1;
			}
		}
		if (!out.has_parent) {
			ids__random(out.trace_id, 4);
			out.trace_flags = sample__flags(out.trace_id);
		}
		ids__random(out.span_id, 2);
	}
	out.flags |= TL_CTX_F_INJECTED;
	__u8 line[TL_TRACEPARENT_LINE_LEN];
	line__format(line, out.trace_id, out.span_id, out.trace_flags);

	__u32 at = scan.line_end;
	if (bpf_msg_push_data(msg, at, TL_TRACEPARENT_LINE_LEN, 0)) {
		stat__count(TL_INJ_FAIL_PUSH);
		return TL_SK_PASS;
	}
	/* push_data leaves the message in three pieces (before, the new bytes, after), and the
	 * kernel sends each piece with its own tcp_sendmsg: the first leaves at once as a small
	 * segment, and on a socket without TCP_NODELAY Nagle holds the others until it is ACKed,
	 * which a receiver's delayed ACK puts off by ~40 ms per request. So the whole message (up
	 * to TL_PULL_MAX) is made one piece again; a larger one, or a failed allocation, is sent in
	 * pieces as before (correct, only slower on such sockets). */
	__u32 total = msg->size;
	__u32 off = at & (TL_SCAN_BYTES - 1); /* at < TL_SCAN_BYTES: the mask only shows the verifier */
	bool whole = total <= TL_PULL_MAX && !bpf_msg_pull_data(msg, 0, total, 0);
	if (!whole) {
		stat__count(TL_INJ_SPLIT_SEND);
		off = 0;
		if (bpf_msg_pull_data(msg, at, at + TL_TRACEPARENT_LINE_LEN, 0)) {
			/* The inserted bytes are not initialised: take them out again. */
			stat__count(TL_INJ_FAIL_PULL);
			if (bpf_msg_pop_data(msg, at, TL_TRACEPARENT_LINE_LEN, 0))
				return TL_SK_DROP; /* never send bytes we did not write */
			return TL_SK_PASS;
		}
	}
	data = msg->data;
	data_end = msg->data_end;
	if (data + off + TL_TRACEPARENT_LINE_LEN > data_end) {
		stat__count(TL_INJ_FAIL_PULL);
		if (bpf_msg_pop_data(msg, at, TL_TRACEPARENT_LINE_LEN, 0))
			return TL_SK_DROP;
		return TL_SK_PASS;
	}
	data += off;
	__u8 *dst = data;
	for (int k = 0; k < TL_TRACEPARENT_LINE_LEN; k++)
		dst[k] = line[k];
	if (!canary)
		bpf_map_update_elem(&inject_out, &pid_tgid, &out, BPF_ANY);
	stat__count(TL_INJ_INJECTED);
	return TL_SK_PASS;
}
