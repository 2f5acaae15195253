/* SPDX-License-Identifier: GPL-2.0-only */
/* Connection identity: fd -> struct file -> socket -> sock -> tuple, by walking task->files
 * (falco's way; works on every kernel with BTF, needs no kprobe). */
#pragma once

/* The walk by plain loads through BTF pointers (the verifier makes them fault-safe loads; a
 * NULL reads as 0): no probe-read helper call per field, only for the fd array's slot (a
 * pointer to a pointer). For the hot single-message paths; sendmmsg/recvmmsg, which walk once
 * per message in one program, keep fd__file: with these loads their verification passed the
 * kernel's one-million-instruction limit. */
static __always_inline struct file *fd__file_btf(__s32 fd)
{
	if (fd < 0)
		return NULL;
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	if (!fdt)
		return NULL;
	unsigned int max_fds = fdt->max_fds;
	if ((unsigned int)fd >= max_fds)
		return NULL;
	struct file **fds = fdt->fd;
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline struct file *fd__file(__s32 fd)
{
	if (fd < 0)
		return NULL;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max_fds)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* The TCP sock behind a file, or NULL for anything else (files, pipes, UDP, unix...). */
static __always_inline struct sock *file__tcp_sock(struct file *f)
{
	if (!f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & TL_S_IFMT) != TL_S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != TL_AF_INET && family != TL_AF_INET6)
		return NULL;
	if (BPF_CORE_READ(sk, sk_type) != TL_SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
}

static __always_inline void sock__tuple(struct sock *sk, struct tl_tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->family = family;
	/* Explicit sizes: BPF_CORE_READ_INTO would size the copy by the array's first element. */
	if (family == TL_AF_INET) {
		bpf_core_read(t->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(t->daddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(t->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

static __always_inline bool conn__port_selected(const struct tl_tuple *t)
{
	return ports__selected(t->sport, t->dport);
}

static __always_inline void conn__emit(__u32 type, const struct tl_fd_key *key,
				       const struct tl_conn_state *st, __u8 source, __u8 reason)
{
	if (st->ignored == TL_IGNORED_SHED)
		return; /* shed: userspace never hears of it (counted in shed_counts), or, shed when
			 * established, heard its TL_CLOSE_SHED already (shed_turn.bpf.h) */
	struct tl_conn_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		drops__count(TL_DROP_CTRL_RING_FULL);
		return;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	event__header(&e->hdr, type, pid_tgid);
	/* Lifecycle events can be raised on behalf of another process (none yet), so the owner
	 * comes from the key, not the current task. */
	e->hdr.tgid = key->tgid;
	e->id.tgid = key->tgid;
	e->id.fd = key->fd;
	e->id.gen = st->gen;
	e->tuple = st->tuple;
	/* A TLS connection's stream, for userspace, is its plaintext: report where that ends. */
	e->bytes[0] = st->tls ? st->tls_bytes[0] : st->bytes[0];
	e->bytes[1] = st->tls ? st->tls_bytes[1] : st->bytes[1];
	e->role = st->role;
	e->source = source;
	e->close_reason = reason;
	e->ignored = st->ignored;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, ring__flags());
}

/* The connection's socket stops reporting state changes (conn__state_change) under its id: once
 * the fd is closed (or reused) userspace has dropped the connection and ignores them, and with a
 * connection per request most of a socket's changes come after close() (FIN_WAIT1, FIN_WAIT2 and
 * CLOSE on the side that closes first, LAST_ACK and CLOSE on the other): 4 of the 6 state events
 * per request of an nginx Connection: close run, each a ring record. Another fd holding the same
 * socket (dup, a forked child) registered itself as the owner when first seen and keeps it. */
static __always_inline void conn__disown_sock(const struct tl_fd_key *key,
					      const struct tl_conn_state *st)
{
	__u64 sk = st->sk;
	struct tl_sock_owner *owner = bpf_map_lookup_elem(&sock_conns, &sk);
	if (owner && owner->id.tgid == key->tgid && owner->id.fd == key->fd &&
	    owner->id.gen == st->gen)
		bpf_map_delete_elem(&sock_conns, &sk);
}

/* Stops tracking (tgid, fd), telling userspace why. */
static __always_inline void conn__forget(__u32 tgid, __s32 fd, __u8 reason)
{
	struct tl_fd_key key = {.tgid = tgid, .fd = fd};
	struct tl_conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return;
	if (st->ignored == TL_IGNORED_SHED) /* since it was shed (0 when new) */
		shed__count(0, st->bytes[0] + st->bytes[1] - st->shed_from);
	conn__emit(TL_EV_CONN_CLOSE, &key, st, 0, reason);
	conn__disown_sock(&key, st);
	bpf_map_delete_elem(&conns, &key);
	ctx__conn_gone(tgid, fd);
}

/* The tracked state of fd in the current process, creating it (and announcing the connection)
 * the first time a TCP socket is seen there. NULL when fd is not a TCP socket or the table is
 * full. A cached entry is trusted only while the same struct file sits behind the fd: any
 * reuse we did not see (close_range, SCM_RIGHTS, exit races) becomes a new connection. */
static __always_inline struct tl_conn_state *conn__get_walk(__s32 fd, __u8 source, __u8 role,
							   bool btf_walk)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct tl_fd_key key = {.tgid = pid_tgid >> 32, .fd = fd};
	struct file *f = btf_walk ? fd__file_btf(fd) : fd__file(fd);
	struct tl_conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (st) {
		if (f && st->file == (__u64)f)
			return st;
		conn__emit(TL_EV_CONN_CLOSE, &key, st, 0, TL_CLOSE_FD_REPLACED);
		conn__disown_sock(&key, st);
		bpf_map_delete_elem(&conns, &key);
		ctx__conn_gone(key.tgid, fd);
	}
	struct sock *sk = file__tcp_sock(f);
	if (!sk)
		return NULL;

	struct tl_conn_state fresh = {};
	__u32 zero = 0;
	__u64 *gen = bpf_map_lookup_elem(&gen_counter, &zero);
	if (!gen)
		return NULL;
	fresh.gen = __sync_fetch_and_add(gen, 1) + 1;
	fresh.file = (__u64)f;
	fresh.sk = (__u64)sk;
	fresh.role = role;
	sock__tuple(sk, &fresh.tuple);
	fresh.ignored = conn__port_selected(&fresh.tuple) ? shed__new_conn(&fresh) : TL_IGNORED_PORT;
	if (bpf_map_update_elem(&conns, &key, &fresh, BPF_NOEXIST)) {
		drops__count(TL_DROP_CONN_MAP_FULL);
		return NULL;
	}
	if (fresh.ignored != TL_IGNORED_SHED) {
		struct tl_sock_owner owner = {.id = {.tgid = key.tgid, .fd = fd, .gen = fresh.gen}};
		bpf_map_update_elem(&sock_conns, &fresh.sk, &owner, BPF_ANY);
		conn__emit(TL_EV_CONN_OPEN, &key, &fresh, source, 0);
	} /* shed: no state events, no open either */
	return bpf_map_lookup_elem(&conns, &key);
}

static __always_inline struct tl_conn_state *conn__get(__s32 fd, __u8 source, __u8 role)
{
	return conn__get_walk(fd, source, role, false);
}

static __always_inline void conn__state_change(__u64 sk, int old_state, int new_state)
{
	struct tl_sock_owner *owner = bpf_map_lookup_elem(&sock_conns, &sk);
	if (!owner)
		return;
	struct tl_state_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		event__header(&e->hdr, TL_EV_CONN_STATE, bpf_get_current_pid_tgid());
		e->hdr.tgid = owner->id.tgid;
		e->id = owner->id;
		e->old_state = old_state;
		e->new_state = new_state;
		bpf_ringbuf_submit(e, ring__flags());
	} else {
		drops__count(TL_DROP_CTRL_RING_FULL);
	}
	if (new_state == TL_TCP_CLOSE)
		bpf_map_delete_elem(&sock_conns, &sk);
}
