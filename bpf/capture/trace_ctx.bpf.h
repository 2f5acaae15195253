/* SPDX-License-Identifier: GPL-2.0-only */
/* The data path's side of the context rule (bpf/capture/ctx.bpf.h): which data events start a
 * request, the server requests in flight per connection and per thread, the tag each request's
 * first data event carries, and, while propagation is on, the trace ids the kernel chooses for
 * the wire (traceparent injection, bpf/inject.bpf.c; the design is in events.h).
 *
 * Called from data__submit for every data event, before the event goes out. A connection's data
 * changing direction (tl_conn_state.ctx_dir) is what starts something:
 *   ingress on a server connection: a server request starts: it gets a number, becomes the
 *     connection's request in flight (ctx_reqs) and counts for the reading thread (ctx_threads);
 *     with propagation on, a server span id and a trace id and flags (from an incoming
 *     traceparent, else the wire hook, else a new trace sampled by sample__flags), reported
 *     (TL_CTX_SERVER);
 *   egress on a server connection: its response starts: the request is no longer in flight;
 *   egress on a client connection: a client request starts: the sender's context decides its
 *     tag (ctx__sender_context).
 * A connection whose role the kernel does not know (opened before the agent) counts as a server
 * connection for ingress that starts with an HTTP/1.x method and as a client one for egress that
 * does. Every other event costs one comparison. With propagation on, ids the sk_msg program
 * injected (or the send's entry chose for the TCP header option) during this very syscall are
 * reported too (TL_CTX_CLIENT). With the TCP option on, every read of a server connection first
 * reports the options that came with its bytes (opt__on_read, capture/tcp_option.bpf.h): a server
 * request starting there takes their context (ctx__wire_context_in). */
#pragma once

#include "capture/ctx.bpf.h"
#include "inject/ids.bpf.h"

/* Set by userspace through the skeleton's .bss (agent/kernel/capture_program.cpp): the kernel
 * chooses ids for the wire (injection switched on after its canary; the TCP option). */
__u32 tl_inject_on = 0;
/* The TCP header option's send and read paths (capture/tcp_option.bpf.h), set by userspace. */
__u32 tl_tcpopt_on = 0;

/* Userspace looks at every exec'd executable (Go or not) and clears ctx_unclassified for it
 * (ctx.bpf.h); set once it does. */
__u32 tl_ctx_classify_on = 0;

/* Node processes the async-context helper was loaded into (--node-async-context): the fd of its
 * marker, by tgid (events.h, struct tl_node_marker). tl_node_helpers (capture/ctx.bpf.h): any
 * loaded (a write's exit looks further only then). Both set by userspace
 * (agent/runtimes/node_async_context). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __s32);
} node_markers SEC(".maps");

/* A write that may be a Node helper's marker: records the pairing it states. */
static __always_inline void ctx__node_marker(const struct tl_io_args *a)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__s32 *fd = bpf_map_lookup_elem(&node_markers, &tgid);
	if (!fd || *fd != a->fd)
		return;
	struct tl_node_marker m;
	if (bpf_probe_read_user(&m, sizeof(m), (void *)a->buf) || m.magic != TL_NODE_MARKER_MAGIC ||
	    m.out_fd < 0)
		return;
	struct tl_ctx_pair pair = {.in_fd = -1, .seq = 0};
	if (m.in_fd >= 0) {
		struct tl_fd_key in = {.tgid = tgid, .fd = m.in_fd};
		struct tl_ctx_request *r = bpf_map_lookup_elem(&ctx_reqs, &in);
		pair.in_fd = m.in_fd;
		/* Answered already (its response started): no request will ever have this number,
		 * so the pairing says "ended", never the connection's next request. */
		pair.seq = r && r->seq ? r->seq : TL_CTX_TAG_SEQ_MASK + 1;
	}
	struct tl_fd_key out = {.tgid = tgid, .fd = m.out_fd};
	bpf_map_update_elem(&ctx_node_pairs, &out, &pair, BPF_ANY);
}

/* Server request numbers (tl_ctx_request.seq): one counter for all. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ctx_seq SEC(".maps");

static __always_inline __u32 ctx__next_seq(void)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&ctx_seq, &zero);
	if (!c)
		return 1;
	return (__u32)(__sync_fetch_and_add(c, 1) % TL_CTX_TAG_SEQ_MASK) + 1;
}

/* What ctx__on_flip needs of the data event (a global function takes at most five arguments,
 * and pointers only to sized types). */
struct tl_ctx_args {
	__u64 pos;
	__u64 enter_ts;
	__u64 gen;
	__u64 sk;       /* struct sock *: the TCP option, derived ids */
	__s32 fd;
	__u32 captured;
	__u32 size;     /* bytes the syscall moved */
	__u8 dir;
	__u8 role;
	__u8 flip; /* the connection's data changed direction here */
	__u8 tls;       /* TLS plaintext */
	__u8 syscall;
	__u8 _pad[7];
};

/* The TCP header option's read side (capture/tcp_option.bpf.h, included after this file).
 * ctx__wire_context_in: context an upstream agent carried on the wire for the request starting
 * at stream position `pos` of this server connection; the one place the incoming side of the
 * wire meets the context rule; false: none. */
__noinline int opt__on_read(struct tl_ctx_args *a);
static __always_inline bool ctx__wire_context_in(const struct tl_fd_key *conn, __u64 gen, __u64 pos,
						 struct tl_sender_ctx *out);

static __always_inline __u32 tcp__write_seq(__u64 sk)
{
	return BPF_CORE_READ((struct tcp_sock *)sk, write_seq);
}

static __always_inline __u32 tcp__copied_seq(__u64 sk)
{
	return BPF_CORE_READ((struct tcp_sock *)sk, copied_seq);
}

/* What derives a server request's ids (ids__derive): the sequence number of the read's first
 * byte (copied_seq, which the read advanced past its bytes). TLS plaintext: the ciphertext read
 * so far, and the plaintext position (two requests can come out of one ciphertext read). */
static __always_inline __u64 ctx__request_key(const struct tl_ctx_args *a)
{
	__u32 copied = tcp__copied_seq(a->sk);
	if (a->tls)
		return ((__u64)copied << 32) ^ a->pos;
	return copied - a->size;
}

/* The captured payload as the verifier must see it: at least TL_SCAN_BYTES + 64 bytes. */
struct tl_ctx_payload {
	__u8 b[TL_SCAN_BYTES + 64];
};

/* Working memory, per CPU. Off the stack because ctx__on_flip's frame adds to the data path's
 * largest (the mmsg exits) and its bpf_loop callback's, and the three together must stay within
 * the verifier's 512 bytes per call chain. */
struct tl_ctx_scratch {
	struct tl_ctx_request req;
	struct tl_sender_ctx wire;
	struct tl_ctx_thread thread;
	__u8 parent[8];
	struct tl_trace_ctx_event ev; /* built here and copied into the ring: nothing spilled */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_ctx_scratch);
} ctx_scratch SEC(".maps");

static __always_inline struct tl_ctx_scratch *ctx__scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&ctx_scratch, &zero);
}

/* Reports ids the kernel chose (w->ev's ids, kind, flags and tag filled by the caller) for the
 * stream range [pos, pos + range_len) of the connection of the data event described by `a`
 * (range_len 0: the data event's own position). */
static __always_inline void ctx__emit_at(__u64 pid_tgid, const struct tl_ctx_args *a,
					 struct tl_ctx_scratch *w, __u64 pos, __u32 range_len)
{
	struct tl_trace_ctx_event *e = &w->ev;
	event__header(&e->hdr, TL_EV_TRACE_CTX, pid_tgid);
	e->id.tgid = pid_tgid >> 32;
	e->id.fd = a->fd;
	e->id.gen = a->gen;
	e->pos = pos;
	e->enter_ts_ns = a->enter_ts;
	e->direction = a->dir;
	e->range_len = range_len;
	e->_pad = 0;
	if (bpf_ringbuf_output(&events, e, sizeof(*e), ring__flags()))
		drops__count(TL_DROP_CTRL_RING_FULL);
}

/* The same for the data event's own position. */
static __always_inline void ctx__emit(__u64 pid_tgid, const struct tl_ctx_args *a,
				      struct tl_ctx_scratch *w)
{
	ctx__emit_at(pid_tgid, a, w, a->pos, 0);
}

/* Does the payload start an HTTP/1.x request? */
static __always_inline bool ctx__http_request_start(const struct tl_ctx_payload *payload,
						    const struct tl_ctx_args *a)
{
	if (a->captured < 16)
		return false;
	__u64 w = 0;
	__builtin_memcpy(&w, payload->b, 8);
	return http__method_prefix(w);
}

/* With propagation on: the server span's ids (into w->req), reported. */
static __always_inline void ctx__server_ids(__u64 pid_tgid, const struct tl_ctx_payload *payload,
					    const struct tl_ctx_args *a, struct tl_ctx_scratch *w)
{
	struct tl_ctx_request *r = &w->req;
	__u8 flags = 0;
	if (ctx__http_request_start(payload, a)) {
		struct tl_scan scan; /* on the stack: bpf_loop takes its context from there only */
		scan__headers(&scan, payload->b, a->captured);
		if (scan.tp_count == 1 && !scan.bad &&
		    traceparent__parse(&scan, r->trace_id, w->parent, &r->trace_flags))
			flags = TL_CTX_F_FROM_HEADER | TL_CTX_F_HAS_PARENT;
	}
	if (!flags) {
		struct tl_fd_key key = {.tgid = pid_tgid >> 32, .fd = a->fd};
		if (ctx__wire_context_in(&key, a->gen, a->pos, &w->wire) && w->wire.has_ids) {
			__builtin_memcpy(r->trace_id, w->wire.trace_id, 16);
			__builtin_memcpy(w->parent, w->wire.span_id, 8);
			r->trace_flags = w->wire.trace_flags;
			flags = TL_CTX_F_HAS_PARENT | TL_CTX_F_TCP_OPTION;
		}
	}
	/* Derived from the request's first byte: every agent on the node chooses the same. */
	const __u64 request_key = ctx__request_key(a);
	if (!flags) {
		ids__derive(r->trace_id, 4, a->sk, request_key, TL_ID_TRACE);
		r->trace_flags = sample__flags(r->trace_id);
	}
	ids__derive(r->span_id, 2, a->sk, request_key, TL_ID_SERVER_SPAN);
	r->has_ids = 1;
	struct tl_trace_ctx_event *e = &w->ev;
	__builtin_memcpy(e->trace_id, r->trace_id, 16);
	__builtin_memcpy(e->span_id, r->span_id, 8);
	__builtin_memcpy(e->parent_span_id, w->parent, 8);
	e->kind = TL_CTX_SERVER;
	e->flags = flags;
	e->trace_flags = r->trace_flags;
	e->ctx_tag = TL_CTX_TAG(TL_CTAG_SERVER, r->seq);
	ctx__emit(pid_tgid, a, w);
}

/* A server request starts in this read: number it, make it the connection's request in flight
 * and count it for the reading thread. Returns its tag. */
static __always_inline __u32 ctx__server_request(__u64 pid_tgid,
						 const struct tl_ctx_payload *payload,
						 const struct tl_ctx_args *a)
{
	struct tl_ctx_scratch *w = ctx__scratch();
	if (!w)
		return 0;
	const __u32 tgid = pid_tgid >> 32;
	struct tl_fd_key key = {.tgid = tgid, .fd = a->fd};
	/* The connection's entry, from its previous request (ctx.bpf.h: kept, rewritten in place). */
	struct tl_ctx_request *prev = bpf_map_lookup_elem(&ctx_reqs, &key);
	/* A request still in flight here (pipelined, or its response was never seen) ends now. */
	ctx__request_end_at(tgid, prev);
	__builtin_memset(w, 0, sizeof(*w));
	struct tl_ctx_request *r = &w->req;
	r->gen = a->gen;
	r->seq = ctx__next_seq();
	r->reader_tid = (__u32)pid_tgid;
	if (tl_inject_on)
		ctx__server_ids(pid_tgid, payload, a, w);
	if (prev) {
		/* seq is 0 (ended above, or by the response): readers (ctx__request_of) take nothing
		 * from the entry until seq is written, last. */
		const __u32 seq = r->seq;
		r->seq = 0;
		*prev = *r;
		barrier();
		WRITE_ONCE(prev->seq, seq);
		r->seq = seq;
	} else {
		bpf_map_update_elem(&ctx_reqs, &key, r, BPF_ANY);
	}

	if (bpf_map_lookup_elem(&go_procs, &tgid)) {
		/* Threads say nothing in Go; the goroutine probes follow the request (go_ctx.bpf.h). */
		return TL_CTX_TAG(TL_CTAG_SERVER, r->seq);
	}
	struct tl_ctx_thread *t = bpf_map_lookup_elem(&ctx_threads, &pid_tgid);
	if (!t) {
		w->thread.inflight = 1;
		w->thread.last_fd = a->fd;
		w->thread.last_seq = r->seq;
		bpf_map_update_elem(&ctx_threads, &pid_tgid, &w->thread, BPF_ANY);
	} else {
		if (t->inflight > 0)
			t->multiplexed = 1; /* a second one while one is in flight: an event loop */
		__sync_fetch_and_add(&t->inflight, 1);
		t->last_fd = a->fd;
		t->last_seq = r->seq;
	}
	return TL_CTX_TAG(TL_CTAG_SERVER, r->seq);
}

/* Ids the sk_msg program injected during this syscall: reported before the data event. */
static __always_inline void ctx__report_injected(__u64 pid_tgid, const struct tl_ctx_args *a)
{
	struct tl_inject_out *o = bpf_map_lookup_elem(&inject_out, &pid_tgid);
	if (!o || o->enter_ts_ns != a->enter_ts)
		return;
	struct tl_ctx_scratch *w = ctx__scratch();
	if (!w)
		return;
	struct tl_trace_ctx_event *e = &w->ev;
	__builtin_memcpy(e->trace_id, o->trace_id, 16);
	__builtin_memcpy(e->span_id, o->span_id, 8);
	__builtin_memcpy(e->parent_span_id, o->parent_span_id, 8);
	e->kind = TL_CTX_CLIENT;
	e->flags = (o->has_parent ? TL_CTX_F_HAS_PARENT : 0) | o->flags;
	e->trace_flags = o->trace_flags;
	e->ctx_tag = o->ctx_tag;
	bpf_map_delete_elem(&inject_out, &pid_tgid);
	ctx__emit(pid_tgid, a, w);
}

/* A global function: the verifier checks it once, not once per path of every caller (the iovec
 * and mmsg loops of the data path would multiply its states past the limit). Called when the
 * connection's data changes direction (a->flip), or for egress while injection is on; returns
 * the event's ctx_tag. */
__noinline int ctx__on_data(struct tl_ctx_payload *payload, struct tl_ctx_args *a)
{
	if (!payload || !a)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	const __u32 tgid = pid_tgid >> 32;
	if (tl_inject_on && a->dir == TL_DIR_EGRESS)
		ctx__report_injected(pid_tgid, a);
	if (!a->flip)
		return 0;
	if (a->dir == TL_DIR_INGRESS) {
		if (a->role == TL_ROLE_CLIENT)
			return 0; /* a response starts */
		if (a->role == TL_ROLE_UNKNOWN && !ctx__http_request_start(payload, a))
			return 0;
		return ctx__server_request(pid_tgid, payload, a);
	}
	if (a->role == TL_ROLE_SERVER) {
		ctx__request_end(tgid, a->fd); /* a response starts */
		return 0;
	}
	if (a->role == TL_ROLE_UNKNOWN &&
	    (ctx__request_end(tgid, a->fd) || !ctx__http_request_start(payload, a)))
		return 0;
	struct tl_ctx_scratch *w = ctx__scratch();
	if (!w)
		return 0;
	__u8 kind = ctx__sender_context(pid_tgid, a->fd, &w->wire);
	return TL_CTX_TAG(kind, w->wire.seq);
}

/* Called for every data event; returns its ctx_tag. Costs one comparison unless the
 * connection's data changed direction (or injection is on and this is egress). `a` is per-CPU
 * scratch (struct tl_data_scratch), so the arguments cost the caller's frame nothing. */
static __always_inline __u32 ctx__on_data_event(__u8 *payload, struct tl_ctx_args *a,
						const struct tl_io_args *io,
						struct tl_conn_state *st, __u8 dir, __u64 pos,
						__u64 size, __u32 captured)
{
	const __u8 now = dir == TL_DIR_EGRESS ? TL_CTX_DIR_EGRESS : TL_CTX_DIR_INGRESS;
	const __u8 flip = st->ctx_dir != now;
	/* Options may come with any read of a server connection (pipelined requests too). */
	const bool options = tl_tcpopt_on && dir == TL_DIR_INGRESS && st->role != TL_ROLE_CLIENT;
	if (!flip && !options && !(tl_inject_on && dir == TL_DIR_EGRESS))
		return 0;
	st->ctx_dir = now;
	a->pos = pos;
	a->enter_ts = io->enter_ts;
	a->gen = st->gen;
	a->sk = st->sk;
	a->fd = io->fd;
	a->captured = captured;
	a->size = (__u32)size;
	a->dir = dir;
	a->role = st->role;
	a->flip = flip;
	a->tls = st->tls;
	a->syscall = io->syscall;
	/* A call of its own (not from ctx__on_data): the two frames never add up on one stack. */
	if (options)
		opt__on_read(a);
	return (__u32)ctx__on_data((struct tl_ctx_payload *)payload, a);
}
