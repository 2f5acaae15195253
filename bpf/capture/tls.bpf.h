/* SPDX-License-Identifier: GPL-2.0-only */
/* TLS plaintext at the library boundary: uprobes on the OpenSSL family's SSL_read, SSL_write,
 * SSL_read_ex and SSL_write_ex (libssl.so, or a binary with OpenSSL linked in such as node).
 *
 *   entry:  stash (ssl, buf, num, size_t *) by thread in "tls_calls";
 *   under:  the socket syscalls the library makes see the stash (data__is_ciphertext): they
 *           record the fd in it, mark the connection TLS and emit nothing;
 *   return: the byte count is known: emit buf as plaintext data of that connection, at its own
 *           plaintext stream position (tl_conn_state.tls_bytes), flagged TL_DATA_F_TLS.
 *           SSL_write over a socket is emitted earlier, at its first write (see
 *           tls__on_socket_write for why).
 *
 * The connection of a call without a syscall underneath (SSL_read served from the library's
 * buffer, memory-BIO users like Node) comes from "tls_conns" (ssl -> fd, learned earlier), else
 * from the socket this thread last moved ciphertext on ("tls_thread_fd"). */
#pragma once

/* The thread's SSL-call byte (io_args__tls_call, shared.bpf.h), which spares the socket programs
 * their tls_calls lookup on threads without an SSL_* call stashed: set before a call is stashed,
 * cleared when it is taken. False when it could not be set (no task storage for this thread:
 * the call must then not be stashed, or the socket I/O under it would pass for plaintext). */
static __always_inline bool tls__thread_mark(bool in_call)
{
	if (!args_task_storage)
		return true;
	struct tl_io_args *slot =
		bpf_task_storage_get(&io_args_task, bpf_get_current_task_btf(), 0,
				     in_call ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	if (!slot)
		return !in_call;
	slot->tls_call = in_call;
	return true;
}

/* The entry of a call of a selected process: its arguments, for what runs under it and at its
 * return. `ret_addr`: non-zero for a uprobe session (the return runs the same program).
 * `own_fd` >= 0: an SSL_write that goes without its return probe, on that socket
 * (tls__write_fd_without_return). False when nothing was stashed. */
static __always_inline bool tls__stash(struct pt_regs *ctx, __u64 pid_tgid, __u8 direction,
				       __u8 ex, __u64 ret_addr, __s32 own_fd)
{
	if (!tls__thread_mark(true)) {
		drops__count(TL_DROP_TLS_CALLS_FULL);
		return false;
	}
	struct tl_tls_call call = {
		.ssl = PT_REGS_PARM1(ctx),
		.buf = PT_REGS_PARM2(ctx),
		.num = (__u32)PT_REGS_PARM3(ctx),
		.out_len = ex ? PT_REGS_PARM4(ctx) : 0,
		.enter_ts = bpf_ktime_get_boot_ns(),
		.fd = own_fd,
		.direction = direction,
		.ex = ex,
		.session = ret_addr != 0,
		.ret_addr = ret_addr,
		.no_return = own_fd >= 0,
	};
	if (bpf_map_update_elem(&tls_calls, &pid_tgid, &call, BPF_ANY)) {
		drops__count(TL_DROP_TLS_CALLS_FULL);
		return false; /* the byte stays set: only a lookup more per socket syscall */
	}
	if (direction == TL_DIR_EGRESS)
		opt__on_tls_write(pid_tgid, -1, call.ssl, call.buf, call.enter_ts);
	return true;
}

static __always_inline int tls__enter(struct pt_regs *ctx, __u8 direction, __u8 ex)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!proc__selected(pid_tgid >> 32))
		return 0;
	tls__stash(ctx, pid_tgid, direction, ex, 0, -1);
	return 0;
}

/* Forgets the thread's call (its return, or the end of a call without one). */
static __always_inline void tls__take(__u64 pid_tgid)
{
	bpf_map_delete_elem(&tls_calls, &pid_tgid);
	tls__thread_mark(false);
}

/* Plaintext emitted (at the first socket write under an SSL_write) but not written by the call:
 * the library's retry on that object passes it again and must not emit it twice. */
static __always_inline void tls__owe(__u32 tgid, __u64 ssl, __u64 owed)
{
	struct tl_tls_key key = {.tgid = tgid, .ssl = ssl};
	__u64 *credit = bpf_map_lookup_elem(&tls_write_credit, &key);
	if (credit)
		owed += *credit;
	bpf_map_update_elem(&tls_write_credit, &key, &owed, BPF_ANY);
}

/* The largest plaintext of one TLS record: a write of more takes several records. */
#define TL_TLS_RECORD_MAX 16384
/* Most a record's ciphertext adds to its plaintext (header, explicit IV, MAC or tag, padding:
 * TLS 1.3 AEAD 22, TLS 1.2 GCM 29, CBC with SHA-1/256 up to ~70): a single write larger than the
 * plaintext plus this holds more than one record (OpenSSL's multi-block CBC writes four or
 * eight records at once). */
#define TL_TLS_RECORD_SLACK 128

/* At the return of an SSL_write that returned all its `num` bytes after exactly one socket write
 * under it, whole and of one record's size: on this connection a write of `num` bytes fits one
 * record (the record size is the library's: 16 KiB, or smaller with max_send_fragment or the
 * max_fragment_length extension). A later write no larger needs no return probe: it either
 * returns all of it or fails, whether or not the caller asked for partial writes, and the socket
 * write under it tells which (tls__on_socket_write, tls__on_socket_write_failed). Learned per
 * connection (a new connection, or a new generation on a reused fd, starts over), never from a
 * memory-BIO caller (no write under its calls). */
static __always_inline void tls__learn_fits(__u64 pid_tgid, __s32 fd, __u32 num)
{
	if (num > TL_TLS_RECORD_MAX)
		return;
	struct tl_fd_key key = {.tgid = pid_tgid >> 32, .fd = fd};
	struct tl_conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (st && st->tls_write_fits < num)
		st->tls_write_fits = (__u16)num;
}

/* At a uprobe session's entry of SSL_write: the socket of an SSL object whose writes of `num`
 * bytes are known to fit one record on its current connection (tls__learn_fits), else -1. Then
 * the call goes without its return probe: its plaintext is emitted at the socket write under it
 * as before, and that write's exit ends the call instead of the return. Memory-BIO callers
 * (Node, asyncio's SSLObject) never qualify: only the return gives their count. A recycled
 * SSL object is mapped to its new socket by its first call that moves bytes (tls_conns); its
 * new connection has learned nothing. */
static __always_inline __s32 tls__write_fd_without_return(__u64 pid_tgid, __u64 ssl, __u64 num)
{
	if (num == 0 || num > TL_TLS_RECORD_MAX)
		return -1;
	struct tl_tls_key key = {.tgid = pid_tgid >> 32, .ssl = ssl};
	__s32 *fd = bpf_map_lookup_elem(&tls_conns, &key);
	if (!fd)
		return -1;
	struct tl_fd_key ck = {.tgid = key.tgid, .fd = *fd};
	struct tl_conn_state *st = bpf_map_lookup_elem(&conns, &ck);
	if (!st || st->tls_write_fits < num)
		return -1;
	return ck.fd;
}

/* The socket fd of this SSL object: the one used under this very call (learned now), else the
 * one learned before, else the one this thread last moved ciphertext on (learned now, unless
 * `guess` is false). -1 when none is known. */
static __always_inline __s32 tls__conn_fd(__u64 pid_tgid, const struct tl_tls_call *call, bool guess)
{
	struct tl_tls_key key = {.tgid = pid_tgid >> 32, .ssl = call->ssl};
	__s32 fd = call->fd;
	if (fd >= 0) {
		fd_map__set(&tls_conns, &key, fd);
		return fd;
	}
	__s32 *known = bpf_map_lookup_elem(&tls_conns, &key);
	if (known)
		return *known;
	__s32 *recent = guess ? bpf_map_lookup_elem(&tls_thread_fd, &pid_tgid) : NULL;
	if (!recent)
		return -1;
	fd = *recent;
	bpf_map_update_elem(&tls_conns, &key, &fd, BPF_ANY); /* known is NULL: a new entry */
	return fd;
}

/* Emits `size` bytes of the call's buffer as plaintext of connection `fd`. `syscall` names the
 * library call in the event (0: the OpenSSL one of the call's direction). Go's crypto/tls probes
 * (go_tls.bpf.h) emit through here too: same flags, same plaintext stream positions. */
static __always_inline void tls__emit(const struct tl_tls_call *call, __s32 fd, __u64 size,
				      __u8 syscall)
{
	struct tl_conn_state *st = conn__get(fd, TL_SRC_FIRST_IO, TL_ROLE_UNKNOWN);
	if (!st) {
		drops__count(TL_DROP_TLS_NO_CONN);
		return;
	}
	__u8 dir = call->direction & 1;
	st->tls = 1;
	__u64 pos = __sync_fetch_and_add(&st->tls_bytes[dir], size);
	if (st->ignored)
		return;
	struct tl_data_scratch *s = data__scratch();
	if (!s)
		return;
	struct tl_io_args a = {
		.enter_ts = call->enter_ts,
		.buf = call->buf,
		.fd = fd,
		.count = (__u32)size,
		.syscall = syscall ? syscall : dir == TL_DIR_EGRESS ? TL_SYS_SSL_WRITE : TL_SYS_SSL_READ,
	};
	__u8 flags = TL_DATA_F_TLS;
	__u32 n = data__read_user(s, call->buf, data__capture_limit(size), &flags);
	data__submit(s, &a, st, dir, pos, size, n, flags);
}

/* At the exit of a successful socket write made under SSL_write: emit the call's whole buffer
 * now rather than at the call's return. Why: that write wakes the peer, and the scheduler often
 * runs the peer at once on this CPU (wakeup preemption) before this thread returns to user mode
 * where the return probe fires. A peer on this node that is traced too would then answer before
 * the request was reported, and the same-node link of its server span to this client span would
 * be lost. The syscall-exit tracepoint runs before that preemption, as for plaintext HTTP.
 * SSL_write writes all `num` bytes or fails and must be retried with the same arguments (or, in
 * partial-write mode, with the rest): bytes emitted here but not reported written by the call
 * become a credit (tls_write_credit) that the retry consumes instead of emitting them again. */
static __always_inline void tls__on_socket_write(__s32 fd, long ret, __u32 requested)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_tls_call *call = bpf_map_lookup_elem(&tls_calls, &pid_tgid);
	if (!call || call->direction != TL_DIR_EGRESS || call->fd != fd)
		return;
	/* The write wrote all it was given: the record (or its rest) is out. */
	const bool whole = ret == requested;
	call->writes = call->writes == 0 && whole && requested <= call->num + TL_TLS_RECORD_SLACK ? 1 : 2;
	const bool ends_call = call->no_return && whole; /* one record: the call returns num */
	if (!call->emitted) {
		call->emitted = 1;
		struct tl_tls_key key = {.tgid = pid_tgid >> 32, .ssl = call->ssl};
		fd_map__set(&tls_conns, &key, fd);
		struct tl_tls_call copy = *call;
		bool retry = false;
		__u64 *credit = bpf_map_lookup_elem(&tls_write_credit, &key);
		if (credit) {
			if (*credit >= copy.num) {
				*credit -= copy.num; /* a retry of bytes already emitted */
				retry = true;
			} else {
				bpf_map_delete_elem(&tls_write_credit, &key);
			}
		}
		if (!retry)
			tls__emit(&copy, fd, copy.num, 0);
	}
	if (ends_call)
		tls__take(pid_tgid);
}

/* At the exit of a failed write() (EAGAIN on a non-blocking socket, EINTR, a reset) under an
 * SSL_write without its return probe, on its own socket: the call fails with it (OpenSSL's
 * socket BIO does not retry) and the caller retries it later with the same arguments, or in
 * partial-write mode with the same (one record's) arguments: what was emitted already is owed,
 * as the return would have settled it. `a`: the write's arguments. */
static __always_inline void tls__on_socket_write_failed(const struct tl_io_args *a)
{
	if (!io_args__tls_call(a))
		return;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_tls_call *call = bpf_map_lookup_elem(&tls_calls, &pid_tgid);
	if (!call || !call->no_return || call->fd != a->fd)
		return;
	if (call->emitted)
		tls__owe(pid_tgid >> 32, call->ssl, call->num);
	tls__take(pid_tgid);
}

static __always_inline int tls__exit(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_tls_call *stashed = bpf_map_lookup_elem(&tls_calls, &pid_tgid);
	if (!stashed)
		return 0;
	struct tl_tls_call call = *stashed;
	tls__take(pid_tgid);

	long ret = PT_REGS_RC(ctx);
	__u64 size = 0;
	if (call.ex) {
		/* SSL_read_ex/SSL_write_ex: 1 on success, the byte count through a size_t *. */
		if ((int)ret == 1 && call.out_len)
			bpf_probe_read_user(&size, sizeof(size), (void *)call.out_len);
	} else if ((int)ret > 0) {
		size = (__u32)ret;
	}
	if (size > call.num)
		size = call.num; /* never more than the buffer: a bad out_len must not fake sizes */
	/* Learn the SSL object's socket even from a call that moved no plaintext (a handshake
	 * step, WANT_READ) when a syscall under it named the socket: its next call may not touch
	 * the socket. Not by guessing from the thread's last TLS socket, though: an event loop with
	 * memory BIOs (Node) calls SSL_read on a new client connection's SSL object before any of
	 * its bytes moved, when that socket is still the server connection it serves, and the guess
	 * then sent the client's plaintext to the server connection for good. */
	__s32 fd = tls__conn_fd(pid_tgid, &call, size > 0);
	if (call.emitted) {
		if (size < call.num)
			tls__owe(pid_tgid >> 32, call.ssl, call.num - size);
		else if (call.writes == 1)
			tls__learn_fits(pid_tgid, call.fd, call.num);
		return 0;
	}
	if (size == 0)
		return 0;
	if (fd < 0) {
		drops__count(TL_DROP_TLS_NO_CONN);
		return 0;
	}
	tls__emit(&call, fd, size, 0);
	return 0;
}

/* The same calls through a uprobe session (BPF_TRACE_UPROBE_SESSION, one uprobe_multi link per
 * library: agent/kernel/tls_attacher), where the entry decides whether the call's return is
 * probed at all: returning 1 from the entry means no return probe, so no return trap and no
 * return-address hijack. Used for: a process that is not selected (every process that maps a
 * probed library takes the entry trap; with a uretprobe it took the return trap too, for
 * nothing). The program runs at both ends; the return is told from an entry by the call's stash:
 * the return's instruction pointer is the return address the entry read from the stack (an entry
 * runs at the probed function's first instruction, which is never a return address). Whether the
 * call is a read or a write, and of which convention, is the probe's cookie
 * (enum tl_tls_cookie, threadline/events.h). */

static __always_inline int tls__session(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_tls_call *stashed = bpf_map_lookup_elem(&tls_calls, &pid_tgid);
	if (stashed && stashed->session && stashed->ret_addr == PT_REGS_IP(ctx))
		return tls__exit(ctx); /* the return (the entry asked for it); the value is ignored */
	if (!proc__selected(pid_tgid >> 32))
		return 1; /* no return probe */
	__u64 ret_addr = 0;
	if (bpf_probe_read_user(&ret_addr, sizeof(ret_addr), (void *)PT_REGS_SP(ctx)) || !ret_addr)
		return 1; /* cannot tell the return apart: trace nothing rather than guess */
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const __u8 ex = cookie & TL_TLS_COOKIE_EX ? 1 : 0;
	__s32 own_fd = -1;
	if (cookie & TL_TLS_COOKIE_EGRESS) {
		const __u64 num = ex ? PT_REGS_PARM3(ctx) : (__u32)PT_REGS_PARM3(ctx);
		own_fd = tls__write_fd_without_return(pid_tgid, PT_REGS_PARM1(ctx), num);
	}
	if (!tls__stash(ctx, pid_tgid, cookie & TL_TLS_COOKIE_EGRESS ? TL_DIR_EGRESS : TL_DIR_INGRESS,
			ex, ret_addr, own_fd))
		return 1; /* nothing stashed: no return probe either (it would pass for an entry) */
	return own_fd >= 0 ? 1 : 0; /* 1: no return probe */
}
