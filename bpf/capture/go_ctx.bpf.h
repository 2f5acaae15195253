/* SPDX-License-Identifier: GPL-2.0-only */
/* Goroutine context for Go programs (issue #13): which server request each goroutine works for,
 * so that a client request's parent is its goroutine's request, not its thread's (a Go thread
 * runs whichever goroutine is ready, and goroutines move between threads at any time).
 *
 * Uprobes placed by userspace (agent/kernel/go_ctx_probes) at functions found in the binary's
 * pclntab (stripped binaries too), all "entry" probes on the jbe of the stack-bound check (see
 * go_tls.bpf.h) except the return-instruction probes of newproc1; never uretprobes:
 *   net/http.(*conn).readRequest(c)  the goroutine serving connection c reads its next request:
 *                       it works for whatever request is in flight on c's socket (seq 0);
 *   runtime.newproc1(fn, callergp)   `go f()`: the new goroutine (the return value, read at
 *                       each return instruction) inherits its creator's request, resolved to
 *                       the request in flight now (a child never follows the connection to its
 *                       next request);
 *   net/http.(*persistConn).roundTrip(treq)  the caller hands the *Request to the transport,
 *                       whose write goroutine sends it: the request is remembered with the
 *                       caller's context (ctx_handoff; fd -1: the caller had none);
 *   net/http.(*Request).write(r)     the write goroutine starts sending r: it takes r's context.
 * The data path (trace_ctx.bpf.h) asks ctx__sender_context with the goroutine read from R14.
 *
 * Offsets into net/http's and net's private structs come from userspace's table per Go version
 * (struct tl_go_ctx_layout in the BPF cookie); a binary whose version is not in it gets no probe
 * and its process is marked untracked in go_procs (no rule: AMBIGUOUS-like, never the thread). */
#pragma once

/* runtime.newproc1 in progress on a thread (it runs on the system stack, never preempted, so
 * the thread identifies the call): the creating goroutine, from the entry to the return. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);   /* pid_tgid */
	__type(value, __u64); /* callergp */
} go_newproc SEC(".maps");

/* Requests handed to a transport's write goroutine: {tgid, *http.Request} -> context. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tl_go_tls_key);
	__type(value, struct tl_go_ctx);
} ctx_handoff SEC(".maps");

/* go__entry_ok (go_tls.bpf.h), with this probe's layout (its cookie) into l. */
static __always_inline bool go_ctx__entry(struct pt_regs *ctx, struct tl_go_ctx_layout *l)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__builtin_memcpy(l, &cookie, sizeof(*l));
	return go__entry_ok(ctx, l->flags);
}

/* The socket fd behind an http.conn, -1 unless the chain of pointers leads to a TCP socket's
 * netFD (family AF_INET/AF_INET6, SOCK_STREAM: a listener that wraps its conns in its own type
 * yields no fd rather than a wrong one). */
static __always_inline __s32 go_ctx__conn_fd(__u64 conn, const struct tl_go_ctx_layout *l)
{
	__u64 rwc = 0, tls_state = 0, netfd = 0;
	__s64 sysfd = -1, fam[2] = {0, 0};
	if (!conn || bpf_probe_read_user(&rwc, sizeof(rwc), (void *)(conn + l->conn_rwc)) || !rwc)
		return -1;
	if (bpf_probe_read_user(&tls_state, sizeof(tls_state), (void *)(conn + l->conn_tls_state)))
		return -1;
	if (tls_state &&
	    (bpf_probe_read_user(&rwc, sizeof(rwc), (void *)(rwc + l->tls_conn_iface)) || !rwc))
		return -1;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(rwc + l->netconn_fd)) || !netfd)
		return -1;
	if (bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(netfd + l->netfd_sysfd)) ||
	    bpf_probe_read_user(fam, sizeof(fam), (void *)(netfd + l->netfd_family)))
		return -1;
	if ((fam[0] != TL_AF_INET && fam[0] != TL_AF_INET6) || fam[1] != TL_SOCK_STREAM)
		return -1;
	if (sysfd < 0 || sysfd > 0x7fffffff)
		return -1;
	return (__s32)sysfd;
}

/* The request goroutine g works for, resolved to the one in flight now. False: none. */
static __always_inline bool go_ctx__resolve(__u32 tgid, __u64 g, struct tl_go_ctx *out)
{
	struct tl_go_tls_key k = {.tgid = tgid, .g = g};
	struct tl_go_ctx *c = bpf_map_lookup_elem(&ctx_goroutines, &k);
	if (!c || c->fd < 0)
		return false;
	out->fd = c->fd;
	out->seq = c->seq;
	if (!out->seq) {
		struct tl_fd_key key = {.tgid = tgid, .fd = c->fd};
		struct tl_ctx_request *r = bpf_map_lookup_elem(&ctx_reqs, &key);
		if (!r)
			return false;
		out->seq = r->seq;
	}
	return true;
}

/* func (c *conn) readRequest(ctx context.Context) (w *response, err error): c in RAX. */
static __always_inline int go_ctx__read_request(struct pt_regs *ctx)
{
	struct tl_go_ctx_layout l;
	if (!go_ctx__entry(ctx, &l))
		return 0;
	__s32 fd = go_ctx__conn_fd(ctx->ax, &l);
	if (fd < 0)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tl_go_tls_key k = {.tgid = tgid, .g = ctx->r14};
	struct tl_go_ctx c = {.fd = fd, .seq = 0};
	bpf_map_update_elem(&ctx_goroutines, &k, &c, BPF_ANY);
	return 0;
}

/* func newproc1(fn *funcval, callergp *g, callerpc uintptr) *g: callergp in RBX. */
static __always_inline int go_ctx__newproc_enter(struct pt_regs *ctx)
{
	struct tl_go_ctx_layout l;
	if (!go_ctx__entry(ctx, &l))
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 parent = ctx->bx;
	bpf_map_update_elem(&go_newproc, &pid_tgid, &parent, BPF_ANY);
	return 0;
}

/* At each return instruction of newproc1: the new g in RAX. */
static __always_inline int go_ctx__newproc_return(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 *parent = bpf_map_lookup_elem(&go_newproc, &pid_tgid);
	if (!parent)
		return 0;
	__u64 callergp = *parent;
	bpf_map_delete_elem(&go_newproc, &pid_tgid);
	__u32 tgid = pid_tgid >> 32;
	struct tl_go_tls_key child = {.tgid = tgid, .g = ctx->ax};
	struct tl_go_ctx c;
	if (callergp && go_ctx__resolve(tgid, callergp, &c))
		bpf_map_update_elem(&ctx_goroutines, &child, &c, BPF_ANY);
	else
		bpf_map_delete_elem(&ctx_goroutines, &child); /* a reused g keeps nothing */
	return 0;
}

/* func (pc *persistConn) roundTrip(req *transportRequest) (*Response, error): req in RBX, the
 * *Request embedded in it. Always leaves an entry, so the writer never keeps an older context. */
static __always_inline int go_ctx__round_trip(struct pt_regs *ctx)
{
	struct tl_go_ctx_layout l;
	if (!go_ctx__entry(ctx, &l))
		return 0;
	__u64 req = 0;
	if (!ctx->bx || bpf_probe_read_user(&req, sizeof(req), (void *)(ctx->bx + l.treq_request)) || !req)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tl_go_ctx c = {.fd = -1, .seq = 0};
	if (!go_ctx__resolve(tgid, ctx->r14, &c)) {
		c.fd = -1;
		c.seq = 0;
	}
	struct tl_go_tls_key k = {.tgid = tgid, .g = req};
	bpf_map_update_elem(&ctx_handoff, &k, &c, BPF_ANY);
	return 0;
}

/* func (r *Request) write(w io.Writer, ...) error: r in RAX. Only requests handed over by a
 * roundTrip change the goroutine's context (a handler writing a request itself keeps its own). */
static __always_inline int go_ctx__request_write(struct pt_regs *ctx)
{
	struct tl_go_ctx_layout l;
	if (!go_ctx__entry(ctx, &l))
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tl_go_tls_key k = {.tgid = tgid, .g = ctx->ax};
	struct tl_go_ctx *h = bpf_map_lookup_elem(&ctx_handoff, &k);
	if (!h)
		return 0;
	struct tl_go_ctx c = *h;
	bpf_map_delete_elem(&ctx_handoff, &k);
	struct tl_go_tls_key me = {.tgid = tgid, .g = ctx->r14};
	bpf_map_update_elem(&ctx_goroutines, &me, &c, BPF_ANY);
	return 0;
}
