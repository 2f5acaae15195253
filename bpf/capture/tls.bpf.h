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
 * return. `ret_addr`: non-zero for a uprobe session (the return runs the same program). False
 * when nothing was stashed. */
static __always_inline bool tls__stash(struct pt_regs *ctx, __u64 pid_tgid, __u8 direction,
				       __u8 ex, __u64 ret_addr)
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
		.fd = -1,
		.direction = direction,
		.ex = ex,
		.session = ret_addr != 0,
		.ret_addr = ret_addr,
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
	tls__stash(ctx, pid_tgid, direction, ex, 0);
	return 0;
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
static __always_inline void tls__on_socket_write(__s32 fd)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_tls_call *call = bpf_map_lookup_elem(&tls_calls, &pid_tgid);
	if (!call || call->direction != TL_DIR_EGRESS || call->emitted || call->fd != fd)
		return;
	call->emitted = 1;
	struct tl_tls_key key = {.tgid = pid_tgid >> 32, .ssl = call->ssl};
	fd_map__set(&tls_conns, &key, fd);
	__u64 *credit = bpf_map_lookup_elem(&tls_write_credit, &key);
	if (credit) {
		if (*credit >= call->num) {
			*credit -= call->num; /* a retry of bytes already emitted */
			return;
		}
		bpf_map_delete_elem(&tls_write_credit, &key);
	}
	struct tl_tls_call copy = *call;
	tls__emit(&copy, fd, copy.num, 0);
}

static __always_inline int tls__exit(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_tls_call *stashed = bpf_map_lookup_elem(&tls_calls, &pid_tgid);
	if (!stashed)
		return 0;
	struct tl_tls_call call = *stashed;
	bpf_map_delete_elem(&tls_calls, &pid_tgid);
	tls__thread_mark(false);

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
		if (size < call.num) {
			struct tl_tls_key key = {.tgid = pid_tgid >> 32, .ssl = call.ssl};
			__u64 owed = call.num - size;
			__u64 *credit = bpf_map_lookup_elem(&tls_write_credit, &key);
			if (credit)
				owed += *credit;
			bpf_map_update_elem(&tls_write_credit, &key, &owed, BPF_ANY);
		}
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
	/* Nothing stashed: no return probe either (it would pass for an entry). */
	return tls__stash(ctx, pid_tgid, cookie & TL_TLS_COOKIE_EGRESS ? TL_DIR_EGRESS : TL_DIR_INGRESS,
			  cookie & TL_TLS_COOKIE_EX ? 1 : 0, ret_addr) ? 0 : 1;
}
