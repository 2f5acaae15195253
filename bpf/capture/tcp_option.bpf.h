/* SPDX-License-Identifier: GPL-2.0-only */
/* The capture object's side of the TCP header option (bpf/tcpopt/wire.bpf.h has the design,
 * bpf/tcp_option.bpf.c the sockops program):
 *   send:  at the entry of a send on an armed client socket whose bytes start a new request,
 *          choose the CLIENT span's ids from the sender's context and record the sequence number
 *          of the request's first byte (tp->write_seq: nothing of this send is queued yet) in
 *          opt_tx, before tcp_sendmsg can transmit it; the ids also go to inject_out, which the
 *          send's exit reports with the data event (TL_CTX_CLIENT) so the span has exactly them.
 *          TLS: the decision is taken on the plaintext at SSL_write / Go (*tls.Conn).Write
 *          entry and handed (opt_tls_mark) to the next ciphertext send on that socket.
 *   read:  at a read's exit, options that arrived with the bytes it returned are mapped from
 *          sequence numbers to stream positions (tp->copied_seq at the read) and reported
 *          (TL_CTX_REMOTE); ctx__wire_context_in answers for the request starting at the read.
 *          TLS: a ciphertext read marks them; the next plaintext read reports them.
 * What starts a request (protocol-neutral, from the bytes the kernel already sees): an HTTP/1.x
 * method or the HTTP/2 preface at the start of the write, else the first write after a read
 * (or the connection's first); TLS records never do by themselves. */
#pragma once

#include "tcpopt/wire.bpf.h"



/* TLS: a request start decided on the plaintext, for the next ciphertext send of that socket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tl_fd_key);
	__type(value, struct tl_inject_out);
} opt_tls_mark SEC(".maps");

/* The option tied to the read being processed when it covers the read's first byte, for
 * ctx__wire_context_in (called later in the same program run, on the same CPU). */
struct tl_wire_in {
	__u32 tgid;
	__s32 fd;
	__u64 gen;
	__u64 pos;
	__u64 len;
	__u8 valid;
	__u8 trace_flags;
	__u8 _pad[6];
	__u8 trace_id[16];
	__u8 span_id[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_wire_in);
} opt_wire_in SEC(".maps");

/* The CLIENT span's ids for a request this thread starts at sequence number `seq` of socket `sk`:
 * the sender's context (or a new trace, sampled by the agent's rule), a span id derived from the
 * request's first byte (ids__derive: every agent on the node chooses the same). False: the
 * context is ambiguous, put none on the wire (counted). */
static __always_inline bool opt__client_ids(__u64 pid_tgid, __s32 fd, __u64 sk, __u32 seq,
					    __u64 enter_ts, struct tl_inject_out *out)
{
	struct tl_sender_ctx s;
	__u8 kind = ctx__sender_context(pid_tgid, fd, &s);
	/* Nothing on the wire when the context rule cannot say (a new trace id would contradict the
	 * parent the agent may still find by evidence), as injection does. */
	if (ctx__kind_sends_nothing(kind) || (ctx__kind_has_parent(kind) && !s.has_ids)) {
		tcpopt__count(TL_OPT_SKIP_AMBIGUOUS);
		return false;
	}
	__builtin_memset(out, 0, sizeof(*out));
	out->ctx_tag = TL_CTX_TAG(kind, s.seq);
	if (ctx__kind_has_parent(kind)) {
		__builtin_memcpy(out->trace_id, s.trace_id, 16);
		__builtin_memcpy(out->parent_span_id, s.span_id, 8);
		out->trace_flags = s.trace_flags;
		out->has_parent = 1;
	} else {
		ids__derive(out->trace_id, 4, sk, seq, TL_ID_TRACE);
		out->trace_flags = sample__flags(out->trace_id);
	}
	ids__derive(out->span_id, 2, sk, seq, TL_ID_CLIENT_SPAN);
	out->enter_ts_ns = enter_ts;
	out->flags = TL_CTX_F_TCP_OPTION;
	return true;
}

static __always_inline void opt__push_start(struct tl_opt_tx *tx, __u32 seq,
					    const struct tl_inject_out *ids)
{
	__u32 head = tx->head;
	__u32 tail = tx->tail;
	struct tl_opt_start *s;
	if (head != tail && tx->starts[(head - 1) & (TL_OPT_SLOTS - 1)].seq == seq) {
		/* The same byte again: the send that recorded it queued nothing (EAGAIN) and this is
		 * its retry. The request is the same; its span takes the new ids. */
		s = &tx->starts[(head - 1) & (TL_OPT_SLOTS - 1)];
		__builtin_memcpy(s->trace_id, ids->trace_id, 16);
		__builtin_memcpy(s->span_id, ids->span_id, 8);
		s->trace_flags = ids->trace_flags;
		return;
	}
	if (head - tail >= TL_OPT_SLOTS) {
		tcpopt__count(TL_OPT_TX_FULL);
		return;
	}
	s = &tx->starts[head & (TL_OPT_SLOTS - 1)];
	s->seq = seq;
	s->trace_flags = ids->trace_flags;
	s->written = 0;
	s->shared = 0;
	__builtin_memcpy(s->trace_id, ids->trace_id, 16);
	__builtin_memcpy(s->span_id, ids->span_id, 8);
	asm volatile("" ::: "memory"); /* the slot is complete before the sockops side sees it */
	tx->head = head + 1;
	tcpopt__count(TL_OPT_STARTS);
}

/* The first 8 bytes a send writes, read from the user buffer of write/sendto, the first iovec of
 * writev, or the first iovec of sendmsg's msghdr. False when they cannot be read cheaply (other
 * syscalls, a fault). */
static __always_inline bool opt__peek(__u8 sys, __u64 buf, __u64 *w)
{
	__u64 base = buf;
	if (sys == TL_SYS_SENDMSG) {
		if (bpf_probe_read_user(&base, sizeof(base),
					(void *)(buf + __builtin_offsetof(struct user_msghdr, msg_iov))))
			return false;
		sys = TL_SYS_WRITEV;
	}
	if (sys == TL_SYS_WRITEV) {
		__u64 iov[2];
		if (!base || bpf_probe_read_user(iov, sizeof(iov), (void *)base))
			return false;
		if (iov[1] < 8)
			return false;
		base = iov[0];
	} else if (sys != TL_SYS_WRITE && sys != TL_SYS_SENDTO) {
		return false;
	}
	return base && !bpf_probe_read_user(w, sizeof(*w), (void *)base);
}

static __always_inline bool opt__h2_preface(__u64 w)
{
	return (w & 0xffffffffull) == TL_W4('P', 'R', 'I', ' ');
}

/* Do the bytes of this write start a new request? w: its first 8 bytes when have_w.
 * HTTP/2: the preface's write (its first HEADERS frame may follow in it or later: the ids are
 * the first request's at or after the write, bpf/tcpopt/wire.bpf.h) and then only writes that
 * open with a HEADERS frame; SETTINGS acks, WINDOW_UPDATEs and PINGs written after a read must
 * not take the next request's place. */
static __always_inline bool opt__starts_request(struct tl_conn_state *st, bool have_w, __u64 w,
						 bool tls_plaintext)
{
	if (have_w) {
		__u8 b0 = w & 0xff, b1 = (w >> 8) & 0xff, b2 = (w >> 16) & 0xff;
		if (b0 >= 0x14 && b0 <= 0x17 && b1 == 0x03 && b2 <= 0x04)
			return false; /* a TLS record: its plaintext decides (opt__on_tls_write) */
		if (opt__h2_preface(w)) {
			st->h2 = 1;
			/* Over TLS the receiver places an option only to within a ciphertext read, so a
			 * preface written on its own (curl: SSL_write of the preface, then one of the
			 * first HEADERS) would give the first stream the preface's ids while the sender's
			 * span took the HEADERS write's: the HEADERS-first write marks it instead. */
			return !tls_plaintext;
		}
		if (st->h2)
			return ((w >> 24) & 0xff) == 0x1; /* frame type HEADERS */
		if (http__method_prefix(w))
			return true;
	}
	return !st->h2 && st->ctx_dir != TL_CTX_DIR_EGRESS;
}

/* The traced, armed client connection behind (tgid, fd), or NULL. */
static __always_inline struct tl_conn_state *opt__client_conn(const struct tl_fd_key *key,
							      struct tl_opt_tx **tx)
{
	struct tl_conn_state *st = bpf_map_lookup_elem(&conns, key);
	if (!st || st->role != TL_ROLE_CLIENT || st->ignored)
		return NULL;
	*tx = bpf_map_lookup_elem(&opt_tx, &st->sk);
	return *tx ? st : NULL;
}

/* Entry of write, writev, sendto, sendmsg, sendmmsg, sendfile on a socket of a traced process. */
static __always_inline void opt__on_send(__s32 fd, __u64 buf, __u8 sys, __u64 enter_ts)
{
	if (!tl_tcpopt_on || !enter_ts)
		return;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_fd_key key = {.tgid = pid_tgid >> 32, .fd = fd};
	struct tl_opt_tx *tx = NULL;
	struct tl_conn_state *st = opt__client_conn(&key, &tx);
	if (!st || !tx)
		return;
	struct tl_inject_out ids;
	const __u32 seq = tcp__write_seq(st->sk);
	if (st->tls) {
		struct tl_inject_out *mark = bpf_map_lookup_elem(&opt_tls_mark, &key);
		if (!mark)
			return;
		ids = *mark;
		bpf_map_delete_elem(&opt_tls_mark, &key);
	} else {
		__u64 w = 0;
		bool have_w = opt__peek(sys, buf, &w);
		if (!opt__starts_request(st, have_w, w, false))
			return;
		if (!opt__client_ids(pid_tgid, fd, st->sk, seq, enter_ts, &ids))
			return;
		/* Reported by this send's exit with its data event (trace_ctx.bpf.h); the sk_msg
		 * program reuses them when it also injects a traceparent. */
		bpf_map_update_elem(&inject_out, &pid_tgid, &ids, BPF_ANY);
	}
	opt__push_start(tx, seq, &ids);
}

/* Entry of SSL_write or Go's (*tls.Conn).Write with plaintext at buf, on socket fd (-1: learn it
 * from the SSL object or the thread's last TLS socket). enter_ts is the call's, which its
 * plaintext data event carries. */
static __always_inline void opt__on_tls_write(__u64 pid_tgid, __s32 fd, __u64 ssl, __u64 buf,
					      __u64 enter_ts)
{
	if (!tl_tcpopt_on)
		return;
	if (fd < 0) {
		struct tl_tls_key tk = {.tgid = pid_tgid >> 32, .ssl = ssl};
		__s32 *known = bpf_map_lookup_elem(&tls_conns, &tk);
		if (!known)
			known = bpf_map_lookup_elem(&tls_thread_fd, &pid_tgid);
		if (!known)
			return;
		fd = *known;
	}
	struct tl_fd_key key = {.tgid = pid_tgid >> 32, .fd = fd};
	struct tl_opt_tx *tx = NULL;
	struct tl_conn_state *st = opt__client_conn(&key, &tx);
	if (!st)
		return;
	__u64 w = 0;
	bool have_w = buf && !bpf_probe_read_user(&w, sizeof(w), (void *)buf);
	if (!opt__starts_request(st, have_w, w, true))
		return;
	/* The ciphertext of this plaintext starts at the socket's write_seq now (nothing of it is
	 * queued yet): the same for every agent. */
	struct tl_inject_out ids;
	if (!opt__client_ids(pid_tgid, fd, st->sk, tcp__write_seq(st->sk), enter_ts, &ids))
		return;
	bpf_map_update_elem(&inject_out, &pid_tgid, &ids, BPF_ANY);
	bpf_map_update_elem(&opt_tls_mark, &key, &ids, BPF_ANY);
}

/* A read of TLS ciphertext on a traced connection (data__begin): options that came with its
 * bytes are reported with the next plaintext the connection yields. */
static __always_inline void opt__on_cipher_read(struct tl_conn_state *st, __u64 size)
{
	if (!tl_tcpopt_on)
		return;
	struct tl_opt_rx *rx = bpf_map_lookup_elem(&opt_rx, &st->sk);
	if (!rx)
		return;
	__u32 c1 = tcp__copied_seq(st->sk);
	__u32 c0 = c1 - (__u32)size;
	for (int i = 0; i < TL_OPT_SLOTS; i++) {
		__u32 idx = rx->tail + i;
		if (idx == rx->head)
			break;
		struct tl_opt_seen *s = &rx->seen[idx & (TL_OPT_SLOTS - 1)];
		if (s->done || s->tls_pending || !seq__before(s->seq, c1))
			continue;
		if (!seq__before(c0, s->end)) {
			s->done = 1; /* read before we followed this connection */
			continue;
		}
		s->plain_pos = st->tls_bytes[TL_DIR_INGRESS];
		s->tls_pending = 1;
	}
}

/* Reports a seen option for the stream range [pos, pos + len) of this read's connection. */
static __always_inline void opt__report(const struct tl_ctx_args *a, __u64 pid_tgid,
					struct tl_opt_seen *s, __u64 pos, __u64 len,
					struct tl_wire_in *w)
{
	struct tl_ctx_scratch *sc = ctx__scratch();
	if (sc) {
		struct tl_trace_ctx_event *e = &sc->ev;
		__builtin_memcpy(e->trace_id, s->trace_id, 16);
		__builtin_memcpy(e->span_id, s->span_id, 8);
		__builtin_memset(e->parent_span_id, 0, 8);
		e->kind = TL_CTX_REMOTE;
		e->flags = TL_CTX_F_TCP_OPTION;
		e->trace_flags = s->trace_flags;
		e->ctx_tag = 0;
		ctx__emit_at(pid_tgid, a, sc, pos, (__u32)len);
	}
	tcpopt__count(TL_OPT_READ);
	s->done = 1;
	if (w && !w->valid && pos <= a->pos && a->pos < pos + len) {
		w->valid = 1;
		w->tgid = pid_tgid >> 32;
		w->fd = a->fd;
		w->gen = a->gen;
		w->pos = pos;
		w->len = len;
		__builtin_memcpy(w->trace_id, s->trace_id, 16);
		__builtin_memcpy(w->span_id, s->span_id, 8);
		w->trace_flags = s->trace_flags;
	}
}

/* An ingress data event about to go out (ctx__on_data_event): report the options that came with the
 * bytes it carries. Plain TCP: sequence numbers map to stream positions through copied_seq,
 * which the read advanced to the end of its bytes. TLS plaintext: the ciphertext read marked
 * them (opt__on_cipher_read). */
__noinline int opt__on_read(struct tl_ctx_args *a)
{
	if (!a)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 zero = 0;
	struct tl_wire_in *w = bpf_map_lookup_elem(&opt_wire_in, &zero);
	if (w)
		w->valid = 0;
	if (!tl_tcpopt_on || !a->sk || a->syscall == TL_SYS_RECVMMSG)
		return 0;
	struct tl_opt_rx *rx = bpf_map_lookup_elem(&opt_rx, &a->sk);
	if (!rx)
		return 0;
	__u32 c1 = 0, c0 = 0;
	if (!a->tls) {
		c1 = tcp__copied_seq(a->sk);
		c0 = c1 - a->size;
	}
	for (int i = 0; i < TL_OPT_SLOTS; i++) {
		__u32 idx = rx->tail + i;
		if (idx == rx->head)
			break;
		struct tl_opt_seen *s = &rx->seen[idx & (TL_OPT_SLOTS - 1)];
		if (s->done)
			continue;
		__u64 len = s->end - s->seq;
		if (a->tls) {
			if (s->tls_pending)
				opt__report(a, pid_tgid, s, s->plain_pos, len, w);
			continue;
		}
		if (!seq__before(s->seq, c1))
			continue; /* not read yet */
		if (!seq__before(c0, s->end)) {
			s->done = 1; /* read before we followed this connection */
			continue;
		}
		/* Stream position of the range's first byte; it may begin before this read. */
		__s64 back = (__s32)(c0 - s->seq);
		__u64 pos = a->pos;
		if (back > 0) {
			if ((__u64)back > pos) {
				len -= back - pos;
				back = pos;
			}
			pos -= back;
		} else {
			pos += -back;
		}
		opt__report(a, pid_tgid, s, pos, len, w);
	}
	/* Retire what was reported, in order (the parse side only adds at head). */
	for (int i = 0; i < TL_OPT_SLOTS; i++) {
		__u32 tail = rx->tail;
		if (tail == rx->head || !rx->seen[tail & (TL_OPT_SLOTS - 1)].done)
			break;
		rx->tail = tail + 1;
	}
	return 0;
}

/* The context a TCP option carried for the request starting at stream position pos of this
 * server connection, when one did (TEAM.md agreement 8: ctx's request rule calls it). Valid
 * within the program run that reported it (opt__on_read ran first for this read). */
static __always_inline bool ctx__wire_context_in(const struct tl_fd_key *conn, __u64 gen, __u64 pos,
						 struct tl_sender_ctx *out)
{
	__u32 zero = 0;
	struct tl_wire_in *w = bpf_map_lookup_elem(&opt_wire_in, &zero);
	if (!w || !w->valid || w->tgid != conn->tgid || w->fd != conn->fd || w->gen != gen)
		return false;
	if (pos < w->pos || pos >= w->pos + w->len)
		return false;
	__builtin_memcpy(out->trace_id, w->trace_id, 16);
	__builtin_memcpy(out->span_id, w->span_id, 8);
	out->trace_flags = w->trace_flags;
	out->has_ids = 1;
	return true;
}

/* The socket is gone (TCP_CLOSE): its option state with it. */
static __always_inline void opt__forget(__u64 sk)
{
	if (!tl_tcpopt_on)
		return;
	bpf_map_delete_elem(&opt_tx, &sk);
	bpf_map_delete_elem(&opt_rx, &sk);
}
