// SPDX-License-Identifier: GPL-2.0-only
/*
 * threadline kernel capture: TCP socket I/O, connection lifecycle and process lifecycle, on
 * syscall tracepoints and sched/sock tracepoints only (no kprobe, no fentry: both are missing
 * or forbidden on many production kernels).
 *
 * These concerns share the connection and selection maps, so they live in one object; each
 * concern is its own header (conn.bpf.h, data.bpf.h, proc.bpf.h, tls.bpf.h) and this file holds
 * only the program entry points, so a reader sees every hook in one place.
 *
 * TLS uprobes live here too (not in an object of their own): the syscalls made under an SSL_*
 * call must see that call, and its plaintext must land on the same connection state. They are
 * attached per library file by userspace (agent/kernel/tls_attacher), never automatically.
 *
 * ctx.bpf.h is the context rule (who a request is for: thread, goroutine, Node helper, or
 * ambiguous); trace_ctx.bpf.h applies it on the data path, tags the events that start requests
 * and reports the trace ids the kernel chooses for the wire (off until userspace switches it on):
 * traceparent injection (bpf/inject.bpf.c) and the TCP header option (tcp_option.bpf.h here, the
 * sockops program in bpf/tcp_option.bpf.c), separate objects that share some of these maps;
 * go_ctx.bpf.h follows goroutines in Go programs.
 */
/* The object that owns the shared maps' settings (capture/ctx.bpf.h: tl_node_helpers). */
#define TL_CAPTURE_OBJECT 1
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "threadline/events.h"

#include "capture/maps.bpf.h"
#include "capture/ctx.bpf.h"
#include "capture/shed.bpf.h"
#include "capture/conn.bpf.h"
#include "capture/shed_turn.bpf.h"
#include "capture/trace_ctx.bpf.h"
#include "capture/tcp_option.bpf.h"
#include "capture/data.bpf.h"
#include "capture/proc.bpf.h"
#include "capture/tls.bpf.h"
#include "capture/go_tls.bpf.h"
#include "capture/go_ctx.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* ------------------------------------------------------------------------------------------
 * Argument stashing: entry programs record the arguments by pid_tgid, exit programs (which
 * alone know the byte count) do the work. Returns the entry time stashed (0: not traced).
 */
/* Syscalls that may send on a socket (and so run the sk_msg program while in progress). */
static __always_inline bool args__sends(__u8 syscall)
{
	switch (syscall) {
	case TL_SYS_WRITE:
	case TL_SYS_WRITEV:
	case TL_SYS_SENDTO:
	case TL_SYS_SENDMSG:
	case TL_SYS_SENDMMSG:
	case TL_SYS_SENDFILE:
		return true;
	default:
		return false;
	}
}

static __always_inline __u64 args__stash(__u8 syscall, __s64 fd, __u64 buf, __u64 count,
					 __u64 flags)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!proc__selected(pid_tgid >> 32))
		return 0;
	struct tl_io_args a = {
		.enter_ts = bpf_ktime_get_boot_ns(),
		.buf = buf,
		.fd = (__s32)fd,
		.count = (__u32)count,
		.flags = (__u32)flags,
		.syscall = syscall,
	};
	/* For the sk_msg program's context rule, which runs inside a sending syscall only (only
	 * Go programs need the goroutine). `syscall` is a constant at every call site, so the
	 * receiving ones compile this out and pay no go_procs lookup. */
	if (args__sends(syscall) && tl_inject_on) {
		__u32 tgid = pid_tgid >> 32;
		if (bpf_map_lookup_elem(&go_procs, &tgid))
			a.g = ctx__current_g();
	}
	if (io_args__put(pid_tgid, &a)) {
		drops__count(TL_DROP_ARGS_MAP_FULL);
		return 0;
	}
	return a.enter_ts;
}

/* A send's entry: stash, and (TCP option) record a request start before tcp_sendmsg runs. */
static __always_inline void args__stash_send(__u8 syscall, __s64 fd, __u64 buf, __u64 count,
					     __u64 flags)
{
	__u64 enter_ts = args__stash(syscall, fd, buf, count, flags);
	opt__on_send((__s32)fd, buf, syscall, enter_ts);
}

/* Returns the stashed arguments (a copy) and forgets them. */
static __always_inline bool args__take_of(__u64 pid_tgid, struct tl_io_args *out)
{
	struct tl_io_args *a = io_args__find(pid_tgid);
	if (!a)
		return false;
	*out = *a;
	io_args__drop(pid_tgid, a);
	return true;
}

/* The syscall's i-th argument from the user registers the kernel saved at syscall entry. The
 * argument registers are not written back while the syscall runs (only ax gets the result),
 * so at exit they still hold what the caller passed. `r` is a BTF pointer
 * (bpf_task_pt_regs): plain loads, no helper call per register. */
static __always_inline __u64 regs__arg(struct pt_regs *r, int i)
{
#if defined(__TARGET_ARCH_x86)
	switch (i) {
	case 0: return r->di;
	case 1: return r->si;
	case 2: return r->dx;
	case 3: return r->r10;
	case 4: return r->r8;
	case 5: return r->r9;
	}
#endif
	return 0;
}

/* Rebuilds a syscall's arguments at its exit from the saved user registers, with the exit time
 * as its entry time. Argument indices < 0 read as 0 (fd: -1). */
static __always_inline bool args__recover(struct tl_io_args *out, __u8 syscall, int i_fd,
					  int i_buf, int i_count, int i_flags)
{
	struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!r)
		return false;
	out->enter_ts = bpf_ktime_get_boot_ns();
	out->fd = i_fd >= 0 ? (__s32)regs__arg(r, i_fd) : -1;
	out->buf = i_buf >= 0 ? regs__arg(r, i_buf) : 0;
	out->count = i_count >= 0 ? (__u32)regs__arg(r, i_count) : 0;
	out->flags = i_flags >= 0 ? (__u32)regs__arg(r, i_flags) : 0;
	out->syscall = syscall;
	out->live = 0;
	out->tls_call = TL_TLS_CALL_ASK; /* io_args__tls_call reads the thread's slot if asked */
	out->_pad = 0;
	out->g = 0;
	return true;
}

/* The arguments of a receiving syscall (read, recvfrom, readv, recvmsg, recvmmsg), which have no
 * entry program: everything their exit needs is in the saved registers, and an entry program
 * would cost every process on the node one more tracepoint hit per call, and a traced one a
 * hash update and delete. What is lost is only the entry time, which for a receive says when
 * the caller started waiting, not when the bytes came: the event's enter_ts is its exit time.
 * False when the call moved nothing or the process is not traced (checked first: an untraced
 * process stops at an inlined array read). */
static __always_inline bool args__at_exit(struct tl_io_args *out, long ret, __u8 syscall,
					  int i_fd, int i_buf, int i_count, int i_flags)
{
	if (ret <= 0 || !proc__selected(bpf_get_current_pid_tgid() >> 32))
		return false;
	return args__recover(out, syscall, i_fd, i_buf, i_count, i_flags);
}

/* The exit side of a syscall: the selection check comes first, before any map is touched,
 * since an untraced process (which stashed nothing at entry) must pay next to nothing. An entry
 * stashed while the process was selected and left here because it no longer is gets
 * overwritten by the thread's next stash or deleted at its exit (proc__on_exit). */
static __always_inline bool args__take(struct tl_io_args *out)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!proc__selected(pid_tgid >> 32))
		return false;
	return args__take_of(pid_tgid, out);
}

/* args__take for a sending syscall that returned `ret`: false when it failed (its stash is
 * dropped) or the process is not traced. Sends keep their entry program: the entry time starts
 * a client span, and the sk_msg program and the context rule read the stash while the send runs.
 * When the entry was never seen, rebuilds the arguments from the saved user registers. That happens to every syscall already in flight when the hooks attached:
 * a thread-per-connection server blocked in read() on a keep-alive connection would otherwise
 * lose the first request it gets after the agent starts. Argument indices < 0 read as 0. */
static __always_inline bool args__take_or_recover(struct tl_io_args *out, long ret, __u8 syscall,
						  int i_fd, int i_buf, int i_count, int i_flags)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	if (!proc__maybe_selected(tgid))
		return false;
	/* A stash means the process was selected at the entry: no second selection lookup. */
	if (args__take_of(pid_tgid, out))
		return ret > 0;
	if (ret <= 0 || !proc__selected(tgid))
		return false;
	return args__recover(out, syscall, i_fd, i_buf, i_count, i_flags);
}

#define SYS_ENTER(name) SEC("tracepoint/syscalls/sys_enter_" #name) int tl_enter_##name(struct trace_event_raw_sys_enter *ctx)
#define SYS_EXIT(name) SEC("tracepoint/syscalls/sys_exit_" #name) int tl_exit_##name(struct trace_event_raw_sys_exit *ctx)

/* --- single-buffer I/O: read, write, sendto, recvfrom ------------------------------------- */

SYS_ENTER(write) { args__stash_send(TL_SYS_WRITE, ctx->args[0], ctx->args[1], ctx->args[2], 0); return 0; }
SYS_ENTER(sendto) { args__stash_send(TL_SYS_SENDTO, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]); return 0; }

static __always_inline int exit__buffer(void *ctx, long ret, __u8 direction, __u8 sys, int i_flags)
{
	struct tl_io_args a;
	a.fd = -1; /* stays -1 unless a stash or the registers filled it */
	a.tls_call = TL_TLS_CALL_ASK;
	if (direction == TL_DIR_INGRESS ? !args__at_exit(&a, ret, sys, 0, 1, 2, i_flags)
					: !args__take_or_recover(&a, ret, sys, 0, 1, 2, i_flags)) {
		/* A failed write taken from its stash: it may end an SSL_write without a return. */
		if (sys == TL_SYS_WRITE && ret < 0 && a.fd >= 0)
			tls__on_socket_write_failed(&a);
		return 0;
	}
	if (sys == TL_SYS_WRITE && ret == sizeof(struct tl_node_marker) && tl_node_helpers)
		ctx__node_marker(&a);
	const bool no_tls_call = data__from_buffer(ctx, &a, direction, (__u64)ret);
	/* OpenSSL's socket BIO writes with write(); other write paths fall back to the return
	 * probe (tls.bpf.h). Not when data__from_buffer just found no SSL_* call in progress on
	 * this thread: tls__on_socket_write would look it up again to find the same nothing. */
	if (direction == TL_DIR_EGRESS && !no_tls_call)
		tls__on_socket_write(a.fd, ret, a.count);
	return 0;
}

SYS_EXIT(read) { return exit__buffer(ctx, ctx->ret, TL_DIR_INGRESS, TL_SYS_READ, -1); }
SYS_EXIT(write) { return exit__buffer(ctx, ctx->ret, TL_DIR_EGRESS, TL_SYS_WRITE, -1); }
SYS_EXIT(sendto) { return exit__buffer(ctx, ctx->ret, TL_DIR_EGRESS, TL_SYS_SENDTO, 3); }
SYS_EXIT(recvfrom) { return exit__buffer(ctx, ctx->ret, TL_DIR_INGRESS, TL_SYS_RECVFROM, 3); }

/* --- iovec I/O: readv, writev, sendmsg, recvmsg -------------------------------------------- */

SYS_ENTER(writev) { args__stash_send(TL_SYS_WRITEV, ctx->args[0], ctx->args[1], ctx->args[2], 0); return 0; }
SYS_ENTER(sendmsg) { args__stash_send(TL_SYS_SENDMSG, ctx->args[0], ctx->args[1], 0, ctx->args[2]); return 0; }

static __always_inline int exit__iov(void *ctx, long ret, __u8 direction, __u8 sys)
{
	struct tl_io_args a;
	if (direction == TL_DIR_INGRESS ? !args__at_exit(&a, ret, sys, 0, 1, 2, -1)
					: !args__take_or_recover(&a, ret, sys, 0, 1, 2, -1))
		return 0;
	data__from_iovec(ctx, &a, direction, (__u64)ret);
	return 0;
}

static __always_inline int exit__msg(void *ctx, long ret, __u8 direction, __u8 sys)
{
	struct tl_io_args a;
	if (direction == TL_DIR_INGRESS ? !args__at_exit(&a, ret, sys, 0, 1, -1, 2)
					: !args__take_or_recover(&a, ret, sys, 0, 1, -1, 2))
		return 0;
	struct user_msghdr msg;
	if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a.buf)) {
		drops__count(TL_DROP_READ_FAULT);
		a.buf = 0;
		a.count = 0;
	} else {
		a.buf = (__u64)msg.msg_iov;
		a.count = (__u32)msg.msg_iovlen;
	}
	data__from_iovec(ctx, &a, direction, (__u64)ret);
	return 0;
}

SYS_EXIT(readv) { return exit__iov(ctx, ctx->ret, TL_DIR_INGRESS, TL_SYS_READV); }
SYS_EXIT(writev) { return exit__iov(ctx, ctx->ret, TL_DIR_EGRESS, TL_SYS_WRITEV); }
SYS_EXIT(sendmsg) { return exit__msg(ctx, ctx->ret, TL_DIR_EGRESS, TL_SYS_SENDMSG); }
SYS_EXIT(recvmsg) { return exit__msg(ctx, ctx->ret, TL_DIR_INGRESS, TL_SYS_RECVMSG); }

/* --- multi-message I/O: sendmmsg, recvmmsg (ret = number of messages) ---------------------- */

SYS_ENTER(sendmmsg) { args__stash_send(TL_SYS_SENDMMSG, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]); return 0; }

static __always_inline int exit__mmsg(void *ctx, long ret, __u8 direction, __u8 sys)
{
	struct tl_io_args a;
	if (direction == TL_DIR_INGRESS ? !args__at_exit(&a, ret, sys, 0, 1, 2, 3)
					: !args__take_or_recover(&a, ret, sys, 0, 1, 2, 3))
		return 0;
	data__from_mmsg(ctx, &a, direction, (__u32)ret);
	return 0;
}

SYS_EXIT(sendmmsg) { return exit__mmsg(ctx, ctx->ret, TL_DIR_EGRESS, TL_SYS_SENDMMSG); }
SYS_EXIT(recvmmsg) { return exit__mmsg(ctx, ctx->ret, TL_DIR_INGRESS, TL_SYS_RECVMMSG); }

/* --- sendfile: bytes move from a file to the socket; size known, payload not ---------------- */

SYS_ENTER(sendfile64) { args__stash_send(TL_SYS_SENDFILE, ctx->args[0], 0, ctx->args[3], 0); return 0; }
SYS_EXIT(sendfile64)
{
	struct tl_io_args a;
	if (!args__take_or_recover(&a, ctx->ret, TL_SYS_SENDFILE, 0, -1, 3, -1))
		return 0;
	data__without_payload(ctx, &a, TL_DIR_EGRESS, (__u64)ctx->ret);
	return 0;
}

/* --- connection lifecycle ------------------------------------------------------------------ */

SYS_ENTER(connect) { args__stash(TL_SYS_CONNECT, ctx->args[0], ctx->args[1], 0, 0); return 0; }
SYS_EXIT(connect)
{
	struct tl_io_args a;
	/* A non-blocking connect returns -EINPROGRESS with the tuple already chosen. */
	if (!args__take(&a) || (ctx->ret != 0 && ctx->ret != -TL_EINPROGRESS))
		return 0;
	conn__get(a.fd, TL_SRC_CONNECT, TL_ROLE_CLIENT);
	return 0;
}

/* No entry program: the new fd is the return value. */
static __always_inline int exit__accept(long ret)
{
	if (ret < 0 || !proc__selected(bpf_get_current_pid_tgid() >> 32))
		return 0;
	conn__get((__s32)ret, TL_SRC_ACCEPT, TL_ROLE_SERVER);
	return 0;
}

SYS_EXIT(accept) { return exit__accept(ctx->ret); }
SYS_EXIT(accept4) { return exit__accept(ctx->ret); }

SYS_ENTER(close)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!proc__selected(tgid))
		return 0;
	conn__forget(tgid, (__s32)ctx->args[0], TL_CLOSE_SYSCALL);
	return 0;
}

/* dup2/dup3 onto a tracked fd end that connection (the kernel closes the old file). */
SYS_ENTER(dup2)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!proc__selected(tgid) || ctx->args[0] == ctx->args[1])
		return 0;
	conn__forget(tgid, (__s32)ctx->args[1], TL_CLOSE_FD_REPLACED);
	return 0;
}

SYS_ENTER(dup3)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!proc__selected(tgid) || ctx->args[0] == ctx->args[1])
		return 0;
	conn__forget(tgid, (__s32)ctx->args[1], TL_CLOSE_FD_REPLACED);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int tl_inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	conn__state_change((__u64)ctx->skaddr, ctx->oldstate, ctx->newstate);
	if (ctx->newstate == TL_TCP_CLOSE)
		opt__forget((__u64)ctx->skaddr);
	return 0;
}

/* --- process lifecycle --------------------------------------------------------------------- */

SEC("tracepoint/sched/sched_process_exec")
int tl_sched_process_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	proc__on_exec(ctx);
	return 0;
}

/* raw tracepoint: the classic one gives only thread ids, and we need to know whether the
 * child is a new process (tgid) or a thread. */
SEC("raw_tracepoint/sched_process_fork")
int tl_sched_process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	proc__on_fork((struct task_struct *)ctx->args[0], (struct task_struct *)ctx->args[1]);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int tl_sched_process_exit(void *ctx)
{
	proc__on_exit();
	return 0;
}

/* --- TLS libraries (uprobes, attached per file by agent/kernel/tls_attacher) --------------- */

/* int SSL_write(SSL *s, const void *buf, int num) */
SEC("uprobe") int tl_ssl_write_enter(struct pt_regs *ctx) { return tls__enter(ctx, TL_DIR_EGRESS, 0); }
/* int SSL_read(SSL *s, void *buf, int num) */
SEC("uprobe") int tl_ssl_read_enter(struct pt_regs *ctx) { return tls__enter(ctx, TL_DIR_INGRESS, 0); }
/* int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written) */
SEC("uprobe") int tl_ssl_write_ex_enter(struct pt_regs *ctx) { return tls__enter(ctx, TL_DIR_EGRESS, 1); }
/* int SSL_read_ex(SSL *s, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe") int tl_ssl_read_ex_enter(struct pt_regs *ctx) { return tls__enter(ctx, TL_DIR_INGRESS, 1); }
/* One return program for all four: the stash says which call it was. */
SEC("uretprobe") int tl_ssl_return(struct pt_regs *ctx) { return tls__exit(ctx); }
/* The same calls through a uprobe session (entry and return in one program); loaded with
 * expected_attach_type BPF_TRACE_UPROBE_SESSION (agent/kernel/capture_program.cpp). */
SEC("uprobe") int tl_ssl_session(struct pt_regs *ctx) { return tls__session(ctx); }

/* Go crypto/tls (go_tls.bpf.h), attached per Go executable with the Conn layout in the cookie. */
/* func (c *Conn) Write(b []byte) (int, error): plaintext emitted at entry, no return probe */
SEC("uprobe") int tl_go_tls_write_enter(struct pt_regs *ctx) { return go_tls__write_enter(ctx); }
/* func (c *Conn) Read(b []byte) (int, error) */
SEC("uprobe") int tl_go_tls_read_enter(struct pt_regs *ctx) { return go_tls__read_enter(ctx); }
/* On each RET instruction of Read (a plain uprobe: never a uretprobe in Go code). */
SEC("uprobe") int tl_go_tls_read_return(struct pt_regs *ctx) { return go_tls__read_return(ctx); }

/* Go goroutine context (go_ctx.bpf.h), attached per Go executable with the layout in the cookie. */
/* func (c *conn) readRequest(ctx context.Context) (*response, error) */
SEC("uprobe") int tl_go_ctx_read_request(struct pt_regs *ctx) { return go_ctx__read_request(ctx); }
/* func newproc1(fn *funcval, callergp *g, callerpc uintptr) *g: entry, and each RET */
SEC("uprobe") int tl_go_ctx_newproc(struct pt_regs *ctx) { return go_ctx__newproc_enter(ctx); }
SEC("uprobe") int tl_go_ctx_newproc_return(struct pt_regs *ctx) { return go_ctx__newproc_return(ctx); }
/* func (pc *persistConn) roundTrip(req *transportRequest) (*Response, error) */
SEC("uprobe") int tl_go_ctx_round_trip(struct pt_regs *ctx) { return go_ctx__round_trip(ctx); }
/* func (r *Request) write(w io.Writer, usingProxy bool, extraHeaders Header, waitForContinue func() bool) error */
SEC("uprobe") int tl_go_ctx_request_write(struct pt_regs *ctx) { return go_ctx__request_write(ctx); }
