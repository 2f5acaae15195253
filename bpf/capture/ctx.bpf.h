/* SPDX-License-Identifier: GPL-2.0-only */
/* Who a request is for: the kernel's context rule (issue #13; the tags it produces are described
 * in bpf/include/threadline/events.h, "Who a request is for").
 *
 * The one question everything that puts trace context on the wire asks (traceparent injection,
 * the TCP header option) and that every client span's parent follows:
 *
 *     ctx__sender_context(pid_tgid, fd, &out): whose server request is this sender working for,
 *     as it starts a request on client socket fd?
 *
 * Answers (enum tl_ctx_tag_kind), checked in this order, each only on evidence:
 *   NODE_ASYNC  the Node helper (--node-async-context) said which server socket's request the
 *               next request on fd is for; the request must still be the one in flight then.
 *   GOROUTINE   Go processes whose goroutines are followed (go_procs, bpf/capture/go_ctx.bpf.h):
 *               the sending goroutine's request (the connection it serves, inherited at `go`,
 *               handed to the transport's writer with the *http.Request). A thread says nothing
 *               in Go: goroutines move between threads at any time.
 *   ENDED       that request was answered already: a new trace, never a later request.
 *   UNTRACKED   a Go process whose goroutines are not followed (unknown Go version): no rule.
 *   THREAD      the thread has exactly one server request in flight and never had two: thread
 *               per request (Python's ThreadingHTTPServer, Apache workers, Tomcat threads).
 *   AMBIGUOUS   the thread has several in flight, or once had (an event loop: nginx, Node,
 *               asyncio; a timer or another request's callback may send while one is in flight).
 *   ROOT        nothing in flight for this sender: a new trace.
 * ROOT and ENDED start a new trace on the wire; AMBIGUOUS and UNTRACKED put nothing on the wire,
 * so that the same-node tuple rule and the agent's evidence rules (forwarded path or header) can
 * still link the spans; the parent kinds send the server span's ids (ctx_reqs, when propagation
 * was on as the request started).
 *
 * Shared by the capture object (which keeps these maps: the data path in trace_ctx.bpf.h, the Go
 * probes in go_ctx.bpf.h) and the injection object (which reuses them by fd). */
#pragma once

#include <bpf/bpf_core_read.h>

/* Added to a go_procs value (TL_GO_PROC_*, which may be 0) by ctx__sender_context_go's callers. */
#define TL_CTX_GO_PROC 0x80000000u

#ifndef READ_ONCE
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))
#endif

/* Node processes the async-context helper was loaded into (--node-async-context): the
 * capture object knows (tl_node_helpers, set by userspace, agent/runtimes/node_async_context;
 * TL_CAPTURE_OBJECT), and only then can "ctx_node_pairs" hold pairings (ctx__node_marker makes
 * them). Other objects that include this file (injection) always look. */
#ifdef TL_CAPTURE_OBJECT
__u32 tl_node_helpers = 0;
#define ctx__node_pairs_maybe() (tl_node_helpers != 0)
#else
#define ctx__node_pairs_maybe() true
#endif

/* The server request of each server connection: in flight while its seq is not 0. The entry
 * lives with the connection (deleted when it is gone, ctx__conn_gone) and is rewritten in place
 * at each request (ctx__server_request) and has its seq cleared when the response starts
 * (ctx__request_end): a keep-alive connection pays no hash update and delete per request. LRU: a
 * connection that vanished without a close we saw ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tl_fd_key);
	__type(value, struct tl_ctx_request);
} ctx_reqs SEC(".maps");

/* Per thread: server requests in flight that it read (struct tl_ctx_thread). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tl_ctx_thread);
} ctx_threads SEC(".maps");

/* Per goroutine of a followed Go process (key {tgid, g}). LRU: goroutines that ended leave their
 * entry; a runtime.g reused for a new goroutine gets it overwritten at creation. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tl_go_tls_key);
	__type(value, struct tl_go_ctx);
} ctx_goroutines SEC(".maps");

/* Go processes (tgid -> TL_GO_PROC_*), written by userspace when it looked at the executable. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u32);
} go_procs SEC(".maps");

/* The Node helper's pairings (struct tl_ctx_pair), by client socket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tl_fd_key);
	__type(value, struct tl_ctx_pair);
} ctx_node_pairs SEC(".maps");

/* Processes that exec'd while the agent runs and whose executable userspace has not looked at
 * yet (is it Go? agent/kernel/go_ctx_probes.cpp deletes the entry once it knows). Until then the
 * thread rule could be wrong: a Go program's threads run all its goroutines, so a thread with one
 * request in flight may well send for another. THREAD becomes AMBIGUOUS meanwhile. Filled at exec
 * only while tl_ctx_classify_on (userspace clears entries only then). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} ctx_unclassified SEC(".maps");

static __always_inline bool ctx__kind_has_parent(__u8 kind)
{
	return kind == TL_CTAG_THREAD || kind == TL_CTAG_GOROUTINE || kind == TL_CTAG_NODE_ASYNC;
}

/* Nothing may go on the wire for this request: a new trace id would contradict the parent the
 * agent may still find by evidence. */
static __always_inline bool ctx__kind_sends_nothing(__u8 kind)
{
	return kind == TL_CTAG_AMBIGUOUS || kind == TL_CTAG_UNTRACKED;
}

/* The running goroutine of a Go program at a syscall or uprobe: Go's register ABI keeps it in
 * R14 in all Go code, and the syscall wrappers (runtime/internal/syscall.Syscall6, ABIInternal)
 * do not touch R14, so the user registers saved at the trap hold it. Meaningless for other
 * programs: read only for go_procs. */
static __always_inline __u64 ctx__current_g(void)
{
#if defined(__TARGET_ARCH_x86)
	struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return r ? BPF_CORE_READ(r, r14) : 0;
#else
	return 0;
#endif
}

/* Is the request `seq` (0: any) still in flight on server connection (tgid, fd)? Fills out. */
static __always_inline bool ctx__request_of(__u32 tgid, __s32 fd, __u32 seq,
					    struct tl_sender_ctx *out)
{
	if (fd < 0)
		return false;
	struct tl_fd_key key = {.tgid = tgid, .fd = fd};
	struct tl_ctx_request *r = bpf_map_lookup_elem(&ctx_reqs, &key);
	if (!r)
		return false;
	const __u32 now = READ_ONCE(r->seq);
	if (!now || (seq && now != seq))
		return false; /* answered already, or another request now */
	out->seq = now;
	out->has_ids = r->has_ids;
	out->trace_flags = r->trace_flags;
	__builtin_memcpy(out->trace_id, r->trace_id, 16);
	__builtin_memcpy(out->span_id, r->span_id, 8);
	/* Rewritten in place by the connection's next request (seq cleared first, written last):
	 * ids copied while that happened are not this request's. */
	return READ_ONCE(r->seq) == now;
}

/* The rule (see the top of this file), for a sender whose goroutine is `g` (0 when unknown; only
 * read for Go processes). For program types without access to the task's registers (sk_msg):
 * the capture object's syscall entry stashes g for them (tl_io_args.g). */
static __always_inline __u8 ctx__sender_context_go(__u64 pid_tgid, __s32 fd, __u32 go_flags,
						   __u64 g, struct tl_sender_ctx *out);

static __always_inline __u8 ctx__sender_context_g(__u64 pid_tgid, __s32 fd, __u64 g,
						  struct tl_sender_ctx *out)
{
	const __u32 tgid = pid_tgid >> 32;
	const __u32 *go = bpf_map_lookup_elem(&go_procs, &tgid);
	return ctx__sender_context_go(pid_tgid, fd, go ? *go | TL_CTX_GO_PROC : 0, g, out);
}

/* The rule with go_procs already looked up: go_flags is its value with TL_CTX_GO_PROC added, or
 * 0 for a process that is not in go_procs (not Go, or not looked at). */
static __always_inline __u8 ctx__sender_context_go(__u64 pid_tgid, __s32 fd, __u32 go_flags,
						   __u64 g, struct tl_sender_ctx *out)
{
	__builtin_memset(out, 0, sizeof(*out));
	const __u32 tgid = pid_tgid >> 32;
	struct tl_fd_key sock = {.tgid = tgid, .fd = fd};
	/* Only the Node helper's markers make pairings: no lookup while none is loaded. */
	struct tl_ctx_pair *pair =
		ctx__node_pairs_maybe() ? bpf_map_lookup_elem(&ctx_node_pairs, &sock) : NULL;
	if (pair) {
		if (pair->in_fd < 0)
			return out->kind = TL_CTAG_ROOT;
		return out->kind = ctx__request_of(tgid, pair->in_fd, pair->seq, out)
					   ? TL_CTAG_NODE_ASYNC
					   : TL_CTAG_ENDED;
	}
	if (go_flags) {
		if (!(go_flags & TL_GO_PROC_TRACKED) || !g)
			return out->kind = TL_CTAG_UNTRACKED;
		struct tl_go_tls_key gk = {.tgid = tgid, .g = g};
		struct tl_go_ctx *c = bpf_map_lookup_elem(&ctx_goroutines, &gk);
		if (!c || c->fd < 0)
			return out->kind = TL_CTAG_ROOT;
		return out->kind = ctx__request_of(tgid, c->fd, c->seq, out) ? TL_CTAG_GOROUTINE
									     : TL_CTAG_ENDED;
	}
	struct tl_ctx_thread *t = bpf_map_lookup_elem(&ctx_threads, &pid_tgid);
	if (!t || t->inflight <= 0)
		return out->kind = TL_CTAG_ROOT;
	if (t->inflight > 1 || t->multiplexed)
		return out->kind = TL_CTAG_AMBIGUOUS;
	/* One in flight and never two: it is the last one the thread read (unless the process may
	 * be a Go program not looked at yet). */
	if (!ctx__request_of(tgid, t->last_fd, t->last_seq, out) ||
	    bpf_map_lookup_elem(&ctx_unclassified, &tgid))
		return out->kind = TL_CTAG_AMBIGUOUS;
	return out->kind = TL_CTAG_THREAD;
}

/* The same, for a sender running now in a program that can read the task (tracepoints,
 * uprobes, sockops in process context). */
static __always_inline __u8 ctx__sender_context(__u64 pid_tgid, __s32 fd,
						struct tl_sender_ctx *out)
{
	__u32 tgid = pid_tgid >> 32;
	const __u32 *go = bpf_map_lookup_elem(&go_procs, &tgid);
	const __u32 go_flags = go ? *go | TL_CTX_GO_PROC : 0;
	return ctx__sender_context_go(pid_tgid, fd, go_flags, go ? ctx__current_g() : 0, out);
}

/* The request in flight in ctx_reqs entry r (of connection tgid) is no longer: its seq is
 * cleared (the entry stays for the connection's next request) and it leaves its reading
 * thread's count. True when there was one. */
static __always_inline bool ctx__request_end_at(__u32 tgid, struct tl_ctx_request *r)
{
	if (!r || !r->seq)
		return false;
	WRITE_ONCE(r->seq, 0);
	__u64 reader = ((__u64)tgid << 32) | r->reader_tid;
	struct tl_ctx_thread *t = bpf_map_lookup_elem(&ctx_threads, &reader);
	if (t && t->inflight > 0)
		__sync_fetch_and_add(&t->inflight, -1);
	return true;
}

/* The request in flight on (tgid, fd) is no longer (its response starts, or the connection
 * closed). True when there was one. */
static __always_inline bool ctx__request_end(__u32 tgid, __s32 fd)
{
	struct tl_fd_key key = {.tgid = tgid, .fd = fd};
	return ctx__request_end_at(tgid, bpf_map_lookup_elem(&ctx_reqs, &key));
}

/* Connection (tgid, fd) is gone (closed, or its fd now holds another file): its request in
 * flight ends and its entry goes, and a Node pairing of the fd must not speak for the next
 * socket on that number. */
static __always_inline void ctx__conn_gone(__u32 tgid, __s32 fd)
{
	struct tl_fd_key key = {.tgid = tgid, .fd = fd};
	struct tl_ctx_request *r = bpf_map_lookup_elem(&ctx_reqs, &key);
	if (r) {
		ctx__request_end_at(tgid, r);
		bpf_map_delete_elem(&ctx_reqs, &key);
	}
	if (ctx__node_pairs_maybe())
		bpf_map_delete_elem(&ctx_node_pairs, &key);
}
