/* SPDX-License-Identifier: GPL-2.0-only */
/* Data events: the bytes a syscall moved on a tracked TCP socket, as (position, full size,
 * captured prefix). Positions advance by the full size even when an event cannot be sent, so
 * userspace always sees a loss as a gap of known size, never as joined bytes. */
#pragma once

/* Scratch for one event under construction, one slot per CPU (an ARRAY indexed by CPU: a
 * PERCPU_ARRAY value may not exceed 32 KiB). The payload area is twice the capture bound so the
 * verifier can prove `offset < MAX && len <= MAX` stays inside it. */
struct tl_user_iovec {
	__u64 base;
	__u64 len;
};

struct tl_data_scratch {
	struct tl_data_event ev;
	__u8 buf[2 * TL_MAX_CAPTURE]; /* right after ev: the two go out as one record */
	struct tl_ctx_args ctx_args;  /* ctx__on_data's arguments: here, not on the stack */
	struct tl_user_iovec iov;     /* the iovec entry data__iov_step is copying */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set to the number of possible CPUs before load */
	__type(key, __u32);
	__type(value, struct tl_data_scratch);
} data_scratch SEC(".maps");

/* User-space layouts (stable ABI), read with bpf_probe_read_user (and tl_user_iovec above). */
struct tl_user_mmsghdr {
	struct user_msghdr hdr;
	__u32 len;
	__u32 _pad;
};

static __always_inline __u32 data__capture_limit(__u64 size)
{
	__u32 cap = capture_bytes;
	if (cap > TL_MAX_CAPTURE)
		cap = TL_MAX_CAPTURE;
	if (size < cap)
		cap = (__u32)size;
	return cap;
}

/* Copies the first n bytes (n from data__capture_limit) of a user buffer into the scratch
 * payload and returns how many were captured: 0, flagged and counted, when the read faults. */
static __always_inline __u32 data__read_user(struct tl_data_scratch *s, __u64 buf, __u32 n,
					     __u8 *flags)
{
	barrier_var(n);
	if (n > TL_MAX_CAPTURE)
		n = TL_MAX_CAPTURE;
	if (n && bpf_probe_read_user(s->buf, n, (void *)buf)) {
		drops__count(TL_DROP_READ_FAULT);
		*flags |= TL_DATA_F_READ_FAULT;
		return 0;
	}
	return n;
}

/* Is this socket I/O TLS ciphertext? True when the thread is inside an SSL_* call (the library
 * is moving its records: the call learns its fd and the connection becomes TLS), or when the
 * connection is already known to be TLS. Ciphertext is never emitted: the plaintext comes from
 * the uprobes (tls.bpf.h), and no parser could read it anyway. */
static __always_inline bool data__is_ciphertext(struct tl_conn_state *st,
						const struct tl_io_args *a, bool ask_byte,
						bool *no_tls_call)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	/* The thread's SSL-call byte first (task storage): most I/O is not under an SSL call, and
	 * then no tls_calls lookup is needed. Not in sendmmsg/recvmmsg (`ask_byte` false), whose
	 * per-message loop inlines this: one branch more per message takes them past the verifier's
	 * instruction limit. */
	struct tl_tls_call *call =
		!ask_byte || io_args__tls_call(a) ? bpf_map_lookup_elem(&tls_calls, &pid_tgid) : NULL;
	const __s32 fd = a->fd;
	/* An SSL_write without its return probe: its stash may outlive it (a call that made no
	 * write), so only its own socket's I/O counts as under it. */
	if (call && call->no_return && call->fd != fd)
		call = NULL;
	*no_tls_call = !call;
	if (call) {
		call->fd = fd;
		st->tls = 1;
	}
	if (!st->tls)
		return false;
	fd_map__set(&tls_thread_fd, &pid_tgid, fd);
	return true;
}

/* Claims [pos, pos+size) of the stream for this event and returns the connection, or NULL when
 * the fd is not a traced TCP connection (or the bytes are TLS ciphertext). *no_tls_call: set
 * when it looked for this thread's SSL_* call in progress and found none (the caller then need
 * not look again: only this thread's uprobes write its entry). */
static __always_inline struct tl_conn_state *data__begin(const struct tl_io_args *a, __u8 dir,
							  __u64 size, __u64 *pos, bool btf_walk,
							  bool *no_tls_call)
{
	*no_tls_call = false;
	struct tl_conn_state *st = conn__get_walk(a->fd, TL_SRC_FIRST_IO, TL_ROLE_UNKNOWN, btf_walk);
	if (!st)
		return NULL;
	shed__at_turn(st, a->fd, dir); /* may end or resume it for userspace: before the claim */
	*pos = __sync_fetch_and_add(&st->bytes[dir & 1], size);
	if (st->ignored)
		return NULL;
	if (data__is_ciphertext(st, a, btf_walk, no_tls_call)) {
		if (dir == TL_DIR_INGRESS && a->syscall != TL_SYS_RECVMMSG)
			opt__on_cipher_read(st, size);
		return NULL;
	}
	return st;
}

/* The first bytes of a stream are a TLS record header (content type handshake, alert, change
 * cipher spec or application data; version 3.x): the handshake a library makes in SSL_connect,
 * SSL_accept or SSL_do_handshake (not hooked: one uprobe less on every connection), a
 * connection opened before the agent, or a process whose TLS library has no probes. Seen at
 * position 0 only, where a plaintext protocol starting with these bytes is not plausible. */
static __always_inline bool data__starts_tls_record(struct tl_conn_state *st, __s32 fd,
						    const struct tl_data_scratch *s, __u64 pos,
						    __u32 captured)
{
	if (pos != 0 || captured < 3)
		return false;
	__u8 type = s->buf[0];
	if (type < 0x14 || type > 0x17 || s->buf[1] != 0x03 || s->buf[2] > 0x04)
		return false;
	st->tls = 1;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	fd_map__set(&tls_thread_fd, &pid_tgid, fd);
	return true;
}

static __always_inline struct tl_data_scratch *data__scratch(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&data_scratch, &cpu);
}

static __always_inline void data__submit(struct tl_data_scratch *s, const struct tl_io_args *a,
					 struct tl_conn_state *st, __u8 dir, __u64 pos,
					 __u64 size, __u32 captured, __u8 flags)
{
	/* Who the request is for, and trace ids for the wire (and the TCP option's contexts that
	 * came with these bytes): first, even when the data event below cannot go out (the
	 * requests in flight must stay counted). */
	s->ev.ctx_tag = ctx__on_data_event(s->buf, &s->ctx_args, a, st, dir, pos, size, captured);
	const __u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (ring_data_limit && avail >= ring_data_limit) {
		drops__count(TL_DROP_DATA_RING_FULL);
		return;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	event__header(&s->ev.hdr, TL_EV_DATA, pid_tgid);
	s->ev.id.tgid = pid_tgid >> 32;
	s->ev.id.fd = a->fd;
	s->ev.id.gen = st->gen;
	s->ev.pos = pos;
	s->ev.enter_ts_ns = a->enter_ts;
	s->ev.size = (__u32)size;
	s->ev.direction = dir;
	s->ev.syscall = a->syscall;
	s->ev.role = st->role;
	s->ev.flags = flags;
	if (captured > TL_MAX_CAPTURE)
		captured = TL_MAX_CAPTURE;
	barrier_var(captured);
	s->ev.captured = captured;
	__u64 len = sizeof(struct tl_data_event) + (captured & (2 * TL_MAX_CAPTURE - 1));
	if (len > sizeof(*s))
		return;
	if (bpf_ringbuf_output(&events, s, len, ring__flags_at(avail)))
		drops__count(TL_DROP_DATA_RING_FULL);
}

/* read/write/sendto/recvfrom. Returns true when it found no SSL_* call in progress on this
 * thread (data__begin's no_tls_call). */
static __always_inline bool data__from_buffer(void *ctx, const struct tl_io_args *a, __u8 dir,
					      __u64 size)
{
	if (dir == TL_DIR_INGRESS && (a->flags & TL_MSG_PEEK))
		return false; /* peeked bytes will be read again */
	__u64 pos;
	bool no_tls_call;
	struct tl_conn_state *st = data__begin(a, dir, size, &pos, true, &no_tls_call);
	if (!st)
		return no_tls_call;
	struct tl_data_scratch *s = data__scratch();
	if (!s)
		return no_tls_call;
	__u8 flags = 0;
	__u32 n = data__capture_limit(size);
	if (dir == TL_DIR_INGRESS && (a->flags & TL_MSG_TRUNC)) {
		n = 0; /* TCP MSG_TRUNC discards the bytes without filling the buffer */
		flags |= TL_DATA_F_NO_PAYLOAD;
	}
	n = data__read_user(s, a->buf, n, &flags);
	if (data__starts_tls_record(st, a->fd, s, pos, n))
		return no_tls_call;
	data__submit(s, a, st, dir, pos, size, n, flags);
	return no_tls_call;
}

/* One walk over an iovec array (bpf_loop's context: on the caller's stack, the only place it
 * may be). */
struct tl_iov_walk {
	__u64 iov_addr;
	__u32 limit; /* bytes to capture in all (data__capture_limit) */
	__u32 off;   /* captured so far */
	__u8 flags;
	__u8 _pad[7];
};

/* bpf_loop step: copies iovec entry `i` into the scratch payload, up to the walk's limit. The
 * entry is read into the scratch too, so the callback's frame stays small (it adds to the
 * largest program frame in the verifier's 512-byte budget per call chain). */
static long data__iov_step(__u64 i, void *ctx)
{
	struct tl_iov_walk *w = ctx;
	__u32 off = w->off;
	if (off >= w->limit)
		return 1;
	struct tl_data_scratch *s = data__scratch();
	if (!s)
		return 1;
	const struct tl_user_iovec *iov = (const struct tl_user_iovec *)w->iov_addr;
	if (bpf_probe_read_user(&s->iov, sizeof(s->iov), &iov[i])) {
		w->flags |= TL_DATA_F_READ_FAULT;
		drops__count(TL_DROP_READ_FAULT);
		return 1;
	}
	__u64 len = s->iov.len;
	__u32 room = w->limit - off;
	if (len > room)
		len = room;
	/* off < limit <= TL_MAX_CAPTURE already; the mask (which the barrier keeps the compiler
	 * from dropping) is what lets the verifier see it. */
	__u32 at = off;
	barrier_var(at);
	at &= TL_MAX_CAPTURE - 1;
	barrier_var(len);
	if (len > TL_MAX_CAPTURE)
		len = TL_MAX_CAPTURE;
	if (len && bpf_probe_read_user(&s->buf[at], len, (void *)s->iov.base)) {
		w->flags |= TL_DATA_F_READ_FAULT;
		drops__count(TL_DROP_READ_FAULT);
		return 1;
	}
	w->off = off + (__u32)len;
	return 0;
}

/* Copies up to the capture limit from an iovec array into the scratch payload: every entry
 * until the limit is reached (a writer that puts each HTTP/2 frame in its own iovec loses
 * nothing of what the limit allows), at most TL_MAX_IOV entries (the kernel's own bound). */
static __always_inline __u32 data__copy_iov(__u64 iov_addr, __u32 iovcnt, __u64 size, __u8 *flags)
{
	struct tl_iov_walk w = {.iov_addr = iov_addr, .limit = data__capture_limit(size)};
	__u32 n = iovcnt > TL_MAX_IOV ? TL_MAX_IOV : iovcnt;
	if (n && w.limit)
		bpf_loop(n, data__iov_step, &w, 0);
	*flags |= w.flags;
	if (iovcnt > TL_MAX_IOV && w.off < w.limit)
		*flags |= TL_DATA_F_IOV_LIMIT;
	return w.off;
}

/* readv/writev/sendmsg/recvmsg: the iovec array at iov_addr, iovcnt long (a->buf and a->count
 * but for the messages of sendmmsg/recvmmsg). */
static __always_inline void data__from_iovec_n(void *ctx, const struct tl_io_args *a, __u8 dir,
					       __u64 size, __u64 iov_addr, __u32 iovcnt,
					       bool btf_walk)
{
	if (dir == TL_DIR_INGRESS && (a->flags & TL_MSG_PEEK))
		return;
	__u64 pos;
	bool no_tls_call;
	struct tl_conn_state *st = data__begin(a, dir, size, &pos, btf_walk, &no_tls_call);
	if (!st)
		return;
	struct tl_data_scratch *s = data__scratch();
	if (!s)
		return;
	__u8 flags = 0;
	__u32 n = 0;
	if (dir == TL_DIR_INGRESS && (a->flags & TL_MSG_TRUNC))
		flags |= TL_DATA_F_NO_PAYLOAD;
	else
		n = data__copy_iov(iov_addr, iovcnt, size, &flags);
	if (data__starts_tls_record(st, a->fd, s, pos, n))
		return;
	data__submit(s, a, st, dir, pos, size, n, flags);
}

static __always_inline void data__from_iovec(void *ctx, const struct tl_io_args *a, __u8 dir,
					     __u64 size)
{
	data__from_iovec_n(ctx, a, dir, size, a->buf, a->count, true);
}

/* sendmmsg/recvmmsg: one data event per message, each with its own position, its iovecs walked
 * like writev's. Each message's three fields are read one by one rather
 * than the whole mmsghdr onto the stack: these programs have the largest frames of the object,
 * and their frame plus ctx__on_data's plus its bpf_loop callback must stay within the 512
 * bytes the verifier allows a call chain. */
static __always_inline void data__from_mmsg(void *ctx, const struct tl_io_args *a, __u8 dir,
					    __u32 nmsgs)
{
	if (dir == TL_DIR_INGRESS && (a->flags & TL_MSG_PEEK))
		return;
	const struct tl_user_mmsghdr *vec = (const struct tl_user_mmsghdr *)a->buf;
	for (int i = 0; i < TL_MAX_MMSG; i++) {
		if (i >= nmsgs)
			return;
		__u32 len = 0;
		__u64 iov = 0, iovlen = 0;
		if (bpf_probe_read_user(&len, sizeof(len), &vec[i].len) ||
		    bpf_probe_read_user(&iov, sizeof(iov), &vec[i].hdr.msg_iov) ||
		    bpf_probe_read_user(&iovlen, sizeof(iovlen), &vec[i].hdr.msg_iovlen)) {
			drops__count(TL_DROP_READ_FAULT);
			return;
		}
		if (len == 0)
			continue;
		data__from_iovec_n(ctx, a, dir, len, iov, (__u32)iovlen, false);
	}
	/* Messages past the loop bound: claim their bytes so userspace sees a gap, and count. */
	struct tl_conn_state *st = NULL;
	for (int i = TL_MAX_MMSG; i < 64; i++) {
		if (i >= nmsgs)
			break;
		__u32 len = 0;
		if (bpf_probe_read_user(&len, sizeof(len), &vec[i].len))
			break;
		if (!st)
			st = conn__get(a->fd, TL_SRC_FIRST_IO, TL_ROLE_UNKNOWN);
		if (!st)
			break;
		__sync_fetch_and_add(&st->bytes[dir & 1], len);
		drops__count(TL_DROP_MMSG_LIMIT);
	}
}

/* sendfile: the bytes come from a file, so only their count is known. */
static __always_inline void data__without_payload(void *ctx, const struct tl_io_args *a,
						  __u8 dir, __u64 size)
{
	__u64 pos;
	bool no_tls_call;
	struct tl_conn_state *st = data__begin(a, dir, size, &pos, true, &no_tls_call);
	if (!st)
		return;
	struct tl_data_scratch *s = data__scratch();
	if (!s)
		return;
	data__submit(s, a, st, dir, pos, size, 0, TL_DATA_F_NO_PAYLOAD);
}
