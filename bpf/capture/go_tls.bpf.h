/* SPDX-License-Identifier: GPL-2.0-only */
/* TLS plaintext of Go programs: uprobes on crypto/tls.(*Conn).Write and (*Conn).Read, placed by
 * userspace (agent/kernel/go_tls_probes) in each Go executable, found through Go's own symbol
 * table (symbolizer/go_binary).
 *
 * Go's register ABI (Go >= 1.17, amd64): arguments in RAX, RBX, RCX, ... and results in RAX,
 * RBX, ...; R14 always holds the running goroutine (runtime.g). So for
 *     func (c *Conn) Write(b []byte) (int, error)  /  Read(b []byte) (int, error)
 * c is RAX, b.ptr RBX, b.len RCX at entry, and n is RAX at each return instruction.
 *
 * "Entry" probes sit on the `jbe` of the stack-bound check that opens every Go function with a
 * frame (symbolizer GoStackCheckJumpOffset): the arguments are still in their registers there,
 * the kernel emulates a jcc (the cmp at the real entry would be single-stepped: a second trap),
 * and a pass that is about to grow the stack and restart the function is told apart by its
 * flags, so a Write is never emitted twice.
 *
 *   Write: entry probe only. The whole buffer is emitted at entry. Go's Write either writes all
 *          of b or fails with an error that sticks to the connection (tls.Conn keeps it in
 *          c.out.err: every later Write fails too), so bytes reported here and not sent can
 *          only be the last ones of a dead connection. Emitting at entry is also what keeps the
 *          same-node link: the plaintext is reported before the first ciphertext byte leaves,
 *          so a traced peer on this node cannot answer before the request is seen (the reason
 *          SSL_write is emitted at its first socket write, see tls__on_socket_write). And it
 *          saves the return probes: Write has no fd problem to solve at return, the fd is read
 *          from the Conn at entry.
 *   Read:  entry probe stashes (buf, len, fd) by goroutine; a probe on each return instruction
 *          (never a uretprobe: it rewrites the return address on the goroutine stack, which
 *          Go's stack copying and traceback do not expect, and the program crashes) emits the
 *          n bytes read. Keyed by (tgid, g), not by thread: a Read that waits for data parks the
 *          goroutine, the thread runs others meanwhile, and the goroutine may resume on another
 *          thread.
 *
 * The fd is read from the Conn: tls.Conn.conn (a net.Conn interface) -> *net.TCPConn ->
 * net.conn.fd (*netFD) -> netFD.pfd.Sysfd, at offsets userspace chose by the binary's Go
 * version and passed in the probe's BPF cookie (struct tl_go_tls_layout). A Conn over something
 * that is not a TCP socket yields an fd conn__get does not accept (counted as tls_no_conn).
 *
 * The connection is marked TLS when its plaintext is emitted (tls__emit), as for OpenSSL; its
 * handshake, the first bytes on the socket, is recognised as TLS records by data.bpf.h, so the
 * ciphertext is never parsed. */
#pragma once

/* Reads in progress, by goroutine. LRU: a goroutine that dies inside Read (its program exits, a
 * panic unwinds it) leaves an entry no return probe deletes; runtime.g structures are reused, so
 * a later Read on the same g simply overwrites it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tl_go_tls_key);
	__type(value, struct tl_go_tls_call);
} go_tls_calls SEC(".maps");

#define TL_X86_EFLAGS_CF 0x0001
#define TL_X86_EFLAGS_ZF 0x0040

/* An entry probe's checks, for every Go probe on a function's entry (these, and the goroutine
 * context probes of go_ctx.bpf.h), given the flags of the probe's layout cookie: the process is
 * traced, the cookie has a layout (TL_GO_LAYOUT_VALID), and this is not the morestack pass of a
 * probe on the stack-check jump (see TL_GO_SITE_STACK_CHECK): the function is about to restart
 * and will come by again. */
static __always_inline bool go__entry_ok(struct pt_regs *ctx, __u32 layout_flags)
{
	if (!proc__selected(bpf_get_current_pid_tgid() >> 32))
		return false;
	if (!(layout_flags & TL_GO_LAYOUT_VALID))
		return false;
	if ((layout_flags & TL_GO_SITE_STACK_CHECK) && (ctx->flags & (TL_X86_EFLAGS_CF | TL_X86_EFLAGS_ZF)))
		return false;
	return true;
}

/* go__entry_ok, with the Conn layout of this probe's binary (its cookie) into l. */
static __always_inline bool go_tls__entry(struct pt_regs *ctx, struct tl_go_tls_layout *l)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__builtin_memcpy(l, &cookie, sizeof(*l));
	return go__entry_ok(ctx, l->flags);
}

/* The socket fd behind a *tls.Conn, -1 when the chain of pointers does not lead to one. */
static __always_inline __s32 go_tls__fd(__u64 conn, const struct tl_go_tls_layout *l)
{
	__u64 netconn = 0, netfd = 0;
	__s64 sysfd = -1;
	if (!conn || bpf_probe_read_user(&netconn, sizeof(netconn), (void *)(conn + l->conn_iface_data)) ||
	    !netconn)
		return -1;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(netconn + l->netconn_fd)) || !netfd)
		return -1;
	if (bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(netfd + l->netfd_sysfd)))
		return -1;
	if (sysfd < 0 || sysfd > 0x7fffffff)
		return -1;
	return (__s32)sysfd;
}

static __always_inline int go_tls__write_enter(struct pt_regs *ctx)
{
	struct tl_go_tls_layout l;
	if (!go_tls__entry(ctx, &l))
		return 0;
	__u64 len = ctx->cx;
	if (len == 0)
		return 0;
	if (len > 0xffffffffULL)
		len = 0xffffffffULL; /* events carry 32-bit sizes */
	__s32 fd = go_tls__fd(ctx->ax, &l);
	if (fd < 0) {
		drops__count(TL_DROP_TLS_NO_CONN);
		return 0;
	}
	struct tl_tls_call call = {
		.buf = ctx->bx,
		.num = (__u32)len,
		.enter_ts = bpf_ktime_get_boot_ns(),
		.fd = fd,
		.direction = TL_DIR_EGRESS,
	};
	opt__on_tls_write(bpf_get_current_pid_tgid(), fd, 0, call.buf, call.enter_ts);
	tls__emit(&call, fd, len, TL_SYS_GO_TLS_WRITE);
	return 0;
}

static __always_inline int go_tls__read_enter(struct pt_regs *ctx)
{
	struct tl_go_tls_layout l;
	if (!go_tls__entry(ctx, &l))
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_go_tls_call call = {
		.buf = ctx->bx,
		.len = ctx->cx,
		.enter_ts = bpf_ktime_get_boot_ns(),
		.fd = go_tls__fd(ctx->ax, &l),
	};
	struct tl_go_tls_key key = {.tgid = pid_tgid >> 32, .g = ctx->r14};
	bpf_map_update_elem(&go_tls_calls, &key, &call, BPF_ANY);
	return 0;
}

static __always_inline int go_tls__read_return(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_go_tls_key key = {.tgid = pid_tgid >> 32, .g = ctx->r14};
	struct tl_go_tls_call *stashed = bpf_map_lookup_elem(&go_tls_calls, &key);
	if (!stashed)
		return 0;
	struct tl_go_tls_call c = *stashed;
	bpf_map_delete_elem(&go_tls_calls, &key);
	__s64 n = (__s64)ctx->ax;
	if (n <= 0)
		return 0;
	if ((__u64)n > c.len)
		n = (__s64)c.len; /* never more than the buffer */
	if (n > 0xffffffffLL)
		n = 0xffffffffLL;
	if (c.fd < 0) {
		drops__count(TL_DROP_TLS_NO_CONN);
		return 0;
	}
	struct tl_tls_call call = {
		.buf = c.buf,
		.num = (__u32)n,
		.enter_ts = c.enter_ts,
		.fd = c.fd,
		.direction = TL_DIR_INGRESS,
	};
	tls__emit(&call, c.fd, (__u64)n, TL_SYS_GO_TLS_READ);
	return 0;
}
