/* SPDX-License-Identifier: GPL-2.0-only */
/* Trace ids chosen in the kernel, for traceparent injection (bpf/inject.bpf.c; the design is in
 * bpf/include/threadline/events.h next to struct tl_trace_ctx_event).
 *
 * Called from data__submit for every data event, before the event goes out, so the ids reach
 * userspace ahead of the bytes they belong to:
 *   ingress, not a client connection, bytes start an HTTP/1.x request: new server span id and a
 *     trace id and flags (from an incoming traceparent, else a new trace sampled by
 *     sample__flags); kept as the thread's context and reported (TL_CTX_SERVER);
 *   egress with ids the sk_msg program injected during this very syscall: reported
 *     (TL_CTX_CLIENT);
 *   egress on the server connection the thread's context came from (the response): the request
 *     is answered, the thread's context ends.
 * Does nothing until userspace switches injection on (tl_inject_on, after the canary). */
#pragma once

#include "inject/ids.bpf.h"

/* Set by userspace through the skeleton's .bss (agent/kernel/capture_program.cpp). */
__u32 tl_inject_on = 0;

static __always_inline void ctx__emit(__u64 pid_tgid, __s32 fd, __u64 gen, __u64 pos,
				      __u64 enter_ts, __u8 dir, __u8 kind, __u8 flags,
				      __u8 trace_flags, const __u8 *trace_id, const __u8 *span_id,
				      const __u8 *parent_id)
{
	struct tl_trace_ctx_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		drops__count(TL_DROP_CTRL_RING_FULL);
		return;
	}
	event__header(&e->hdr, TL_EV_TRACE_CTX, pid_tgid);
	e->id.tgid = pid_tgid >> 32;
	e->id.fd = fd;
	e->id.gen = gen;
	e->pos = pos;
	e->enter_ts_ns = enter_ts;
	__builtin_memcpy(e->trace_id, trace_id, 16);
	__builtin_memcpy(e->span_id, span_id, 8);
	__builtin_memcpy(e->parent_span_id, parent_id, 8);
	e->kind = kind;
	e->direction = dir;
	e->flags = flags;
	e->trace_flags = trace_flags;
	e->_pad = 0;
	bpf_ringbuf_submit(e, ring__flags());
}

/* What ctx__on_data needs of the data event (a global function takes at most five arguments,
 * and pointers only to sized types). */
struct tl_ctx_args {
	__u64 pos;
	__u64 enter_ts;
	__u64 gen;
	__s32 fd;
	__u32 captured;
	__u8 dir;
	__u8 role;
	__u8 _pad[6];
};

/* The captured payload as the verifier must see it: at least TL_SCAN_BYTES + 64 bytes. */
struct tl_ctx_payload {
	__u8 b[TL_SCAN_BYTES + 64];
};

/* ctx__on_request's working memory, per CPU. Off the stack because ctx__on_data's frame adds
 * to the data path's largest (the mmsg exits) and its bpf_loop callback's, and the three
 * together must stay within the verifier's 512 bytes per call chain. */
struct tl_ctx_scratch {
	struct tl_thread_ctx t;
	__u8 parent[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_ctx_scratch);
} ctx_scratch SEC(".maps");

/* A request starts in this read: choose its server span's ids. */
static __always_inline void ctx__on_request(__u64 pid_tgid, const __u8 *payload,
					    const struct tl_ctx_args *a)
{
	struct tl_scan scan; /* on the stack: bpf_loop takes its context from there only */
	scan__headers(&scan, payload, a->captured);

	__u32 zero = 0;
	struct tl_ctx_scratch *w = bpf_map_lookup_elem(&ctx_scratch, &zero);
	if (!w)
		return;
	__builtin_memset(w, 0, sizeof(*w));
	struct tl_thread_ctx *t = &w->t;
	__u8 flags = 0;
	if (scan.tp_count == 1 && !scan.bad && traceparent__parse(&scan, t->trace_id, w->parent, &t->trace_flags)) {
		flags = TL_CTX_F_FROM_HEADER | TL_CTX_F_HAS_PARENT;
	} else {
		ids__random(t->trace_id, 4);
		t->trace_flags = sample__flags(t->trace_id);
	}
	ids__random(t->span_id, 2);
	t->conn.tgid = pid_tgid >> 32;
	t->conn.fd = a->fd;
	t->conn.gen = a->gen;
	t->ts_ns = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&thread_ctx, &pid_tgid, t, BPF_ANY);
	ctx__emit(pid_tgid, a->fd, a->gen, a->pos, a->enter_ts, TL_DIR_INGRESS, TL_CTX_SERVER, flags,
		  t->trace_flags, t->trace_id, t->span_id, w->parent);
}

/* A global function: the verifier checks it once, not once per path of every caller (the
 * iovec and mmsg loops of the data path would multiply its states past the limit). */
__noinline int ctx__on_data(struct tl_ctx_payload *payload, struct tl_ctx_args *a)
{
	if (!payload || !a)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (a->dir == TL_DIR_EGRESS) {
		struct tl_inject_out *o = bpf_map_lookup_elem(&inject_out, &pid_tgid);
		if (o && o->enter_ts_ns == a->enter_ts) {
			ctx__emit(pid_tgid, a->fd, a->gen, a->pos, a->enter_ts, TL_DIR_EGRESS,
				  TL_CTX_CLIENT, o->has_parent ? TL_CTX_F_HAS_PARENT : 0,
				  o->trace_flags, o->trace_id, o->span_id, o->parent_span_id);
			bpf_map_delete_elem(&inject_out, &pid_tgid);
			return 0;
		}
		if (a->role != TL_ROLE_CLIENT) {
			struct tl_thread_ctx *t = bpf_map_lookup_elem(&thread_ctx, &pid_tgid);
			if (t && t->conn.fd == a->fd && t->conn.gen == a->gen)
				bpf_map_delete_elem(&thread_ctx, &pid_tgid);
		}
		return 0;
	}
	if (a->role == TL_ROLE_CLIENT || a->captured < 16)
		return 0;
	__u64 w = 0;
	__builtin_memcpy(&w, payload->b, 8);
	if (!http__method_prefix(w))
		return 0;
	ctx__on_request(pid_tgid, payload->b, a);
	return 0;
}

/* Called for every data event; costs one load while injection is off. `a` is per-CPU scratch
 * (struct tl_data_scratch), so the arguments cost the caller's frame nothing. */
static __always_inline void ctx__on_data_event(__u8 *payload, struct tl_ctx_args *a,
					       const struct tl_io_args *io,
					       const struct tl_conn_state *st, __u8 dir, __u64 pos,
					       __u32 captured)
{
	if (!tl_inject_on)
		return;
	a->pos = pos;
	a->enter_ts = io->enter_ts;
	a->gen = st->gen;
	a->fd = io->fd;
	a->captured = captured;
	a->dir = dir;
	a->role = st->role;
	ctx__on_data((struct tl_ctx_payload *)payload, a);
}
