/* SPDX-License-Identifier: GPL-2.0-only */
/* The part of the capture object the injection and TCP option objects (bpf/inject.bpf.c,
 * bpf/tcp_option.bpf.c) link too: the
 * selection rule with its settings and map, and the maps the sk_msg program reads. Declared once
 * here so both objects see the same layout; the capture object creates the maps and the
 * injection object reuses them by fd before load (agent/kernel/injector.cpp), so there is one
 * instance of each (as for inject/ids.bpf.h). */
#pragma once

/* Load-time settings (rodata), set in each object by its loader. */
const volatile __u32 agent_tgid = 0;
/* Selection (agent/discovery/selector.h, pod_selection.h). The two filters combine with AND:
 *   filter_by_process: only tgids marked TL_SEL_TRACE in "selected" (--pid, --exe);
 *   filter_by_cgroup:  only tasks whose cgroup v2 id is in "selected_cgroups" (the containers
 *                      of the pods --namespace/--label select; userspace keeps the set).
 * Neither: every process but the excluded ones. */
const volatile bool filter_by_process = false;
const volatile bool filter_by_cgroup = false;
const volatile bool port_filter = false; /* true: only connections with a port in "ports" */

/* tl_io_args.tls_call of arguments rebuilt at an exit: the task's slot has the answer. */
#define TL_TLS_CALL_ASK 2

/* A syscall in progress (map "io_args"), stashed at entry for the exit. */
struct tl_io_args {
	__u64 enter_ts;
	__u64 buf;   /* user buffer, iovec array, msghdr or mmsghdr array */
	__s32 fd;
	__u32 count; /* buffer length, iovcnt or vlen */
	__u32 flags; /* recv/send flags */
	__u8 syscall;
	__u8 live;   /* io_args_task only: 1 from the entry's stash until its exit takes it */
	__u8 tls_call; /* io_args_task only: in the task's slot, 1 while the thread has an SSL_* call
	                * stashed in "tls_calls" (set by the TLS uprobes, tls__thread_mark; kept by
	                * io_args__put); in a copy taken at an exit, the slot's value then, or
	                * TL_TLS_CALL_ASK when the arguments were rebuilt (args__recover) */
	__u8 _pad;
	__u64 g;     /* the calling goroutine (Go; while injection is on), for the sk_msg program,
	              * which cannot read the task's registers (ctx__sender_context_g) */
};

/* Where the stash lives, fixed at load by runtime probing (agent/kernel/capture_program.cpp,
 * logged with the hook choices): true, in the task's own storage ("io_args_task": a lookup
 * through the task's storage cache, a plain store to stash, a store of `live` to take; no hash,
 * no bucket lock, no element allocated and freed per send, and it goes with the task); false
 * (kernels without task storage for tracepoint or sk_msg programs), in the "io_args" hash by
 * pid_tgid (update at the entry, lookup and delete at the exit). The unused map is shrunk to
 * one entry (io_args) or turned into a one-entry array (io_args_task) before load. */
const volatile bool args_task_storage = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct tl_io_args);
} io_args SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tl_io_args);
} io_args_task SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tl_fd_key);
	__type(value, struct tl_conn_state);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* tgid */
	__type(value, struct tl_selection);
} selected SEC(".maps");

/* A bitmap in front of "selected": bit (tgid % 64) of word (tgid / 64) is set whenever
 * "selected" may hold an entry for tgid (set before an entry is added, cleared after it is
 * removed; by userspace through its mapping, atomically, and by the kernel's exec/fork/exit
 * hooks). Every syscall of every process asks proc__selected, and nearly all of them have no
 * entry (not selected with --pid, nothing special without it): an inlined array read answers
 * them instead of a hash lookup. tgids past the end (pid_max raised after load) fall back to
 * the hash. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); /* (pid_max + 63) / 64, set by the agent before load */
	__type(key, __u32);
	__type(value, __u64);
} selected_hint SEC(".maps");

/* cgroup v2 ids (bpf_get_current_cgroup_id) of the selected containers' cgroups. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} selected_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16); /* port, host order */
	__type(value, __u8);
} ports SEC(".maps");

/* The sockets of tracked connections while their fd is open (key: struct sock *), for TCP state
 * changes, which arrive in softirq context where the current task says nothing about the owner;
 * the TCP option's parse side asks it whether this agent follows a socket. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct tl_sock_owner);
} sock_conns SEC(".maps");

/* TLS (tls.bpf.h): SSL_* calls in progress, by thread. An entry lives from the entry uprobe to
 * the return uprobe (or the thread's exit), so the map holds at most one per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct tl_tls_call);
} tls_calls SEC(".maps");

/* Is this process traced? The agent never traces itself. `tgid` must be the current task's
 * (every caller runs in the process's own context: syscalls, uprobes, fork in the parent,
 * sockops connect and sk_msg in the sender), since the cgroup filter reads the current task's
 * cgroup. */
static __always_inline __u64 *proc__hint_word(__u32 tgid)
{
	__u32 word = tgid / 64;
	return bpf_map_lookup_elem(&selected_hint, &word);
}

/* The "selected" entry of tgid, or NULL: through the hint, so a tgid without one costs no hash
 * lookup. */
static __always_inline struct tl_selection *proc__selection(__u32 tgid)
{
	__u64 *bits = proc__hint_word(tgid);
	if (bits && !(*bits & (1ull << (tgid & 63))))
		return NULL;
	return bpf_map_lookup_elem(&selected, &tgid);
}

/* Call before adding an entry for tgid to "selected". */
static __always_inline void proc__hint_set(__u32 tgid)
{
	__u64 *bits = proc__hint_word(tgid);
	if (bits && !(*bits & (1ull << (tgid & 63))))
		__sync_fetch_and_or(bits, 1ull << (tgid & 63));
}

/* Call after removing tgid's entry from "selected". */
static __always_inline void proc__hint_clear(__u32 tgid)
{
	__u64 *bits = proc__hint_word(tgid);
	if (bits && (*bits & (1ull << (tgid & 63))))
		__sync_fetch_and_and(bits, ~(1ull << (tgid & 63)));
}

/* A first, cheap answer for the hottest paths (syscall exits): false only when the process is
 * surely not traced (the agent itself, or no "selected" entry while only selected processes
 * are traced); true means "ask proc__selected". */
static __always_inline bool proc__maybe_selected(__u32 tgid)
{
	if (tgid == agent_tgid)
		return false;
	if (filter_by_process) {
		__u64 *bits = proc__hint_word(tgid);
		if (bits && !(*bits & (1ull << (tgid & 63))))
			return false;
	}
	return true;
}

static __always_inline bool proc__selected(__u32 tgid)
{
	if (tgid == agent_tgid)
		return false;
	struct tl_selection *s = proc__selection(tgid);
	if (s && (s->flags & TL_SEL_EXCLUDE))
		return false;
	if (filter_by_process && !(s && (s->flags & TL_SEL_TRACE)))
		return false;
	if (filter_by_cgroup) {
		__u64 cgroup = bpf_get_current_cgroup_id();
		if (!bpf_map_lookup_elem(&selected_cgroups, &cgroup))
			return false;
	}
	return true;
}

/* Does the port selection (--port) keep a connection with these ports (host order)? */
static __always_inline bool ports__selected(__u16 local, __u16 remote)
{
	if (!port_filter)
		return true;
	return bpf_map_lookup_elem(&ports, &local) || bpf_map_lookup_elem(&ports, &remote);
}

/* --- the stash of a syscall in progress (io_args / io_args_task) ---------------------------- */

/* The current thread's stash, or NULL when there is none (taken, or never made). The caller
 * must be the thread itself (pid_tgid = bpf_get_current_pid_tgid()). */
static __always_inline struct tl_io_args *io_args__find(__u64 pid_tgid)
{
	if (args_task_storage) {
		struct tl_io_args *a =
			bpf_task_storage_get(&io_args_task, bpf_get_current_task_btf(), 0, 0);
		return a && a->live ? a : NULL;
	}
	return bpf_map_lookup_elem(&io_args, &pid_tgid);
}

/* Stashes *a for the current thread; non-zero when there was no room. */
static __always_inline int io_args__put(__u64 pid_tgid, const struct tl_io_args *a)
{
	if (args_task_storage) {
		struct tl_io_args *slot = bpf_task_storage_get(&io_args_task, bpf_get_current_task_btf(),
							       0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!slot)
			return -1;
		const __u8 tls_call = slot->tls_call; /* the thread's, not the syscall's */
		*slot = *a;
		slot->live = 1;
		slot->tls_call = tls_call;
		return 0;
	}
	return bpf_map_update_elem(&io_args, &pid_tgid, a, BPF_ANY);
}

/* Forgets the stash io_args__find returned. */
static __always_inline void io_args__drop(__u64 pid_tgid, struct tl_io_args *a)
{
	if (args_task_storage)
		a->live = 0;
	else
		bpf_map_delete_elem(&io_args, &pid_tgid);
}

/* Has the current thread an SSL_* call stashed in "tls_calls"? (the socket programs ask it per
 * traced event: I/O under an SSL call is ciphertext.) With task storage, the byte the TLS uprobes
 * keep in the thread's slot answers, so a thread that is not inside an SSL call (every thread of
 * a process without TLS) pays no hash lookup; `a` is the syscall's arguments as taken at its
 * exit (a stash's copy carries the byte). Without task storage: true, the hash answers. */
static __always_inline bool io_args__tls_call(const struct tl_io_args *a)
{
	if (!args_task_storage)
		return true;
	if (a->tls_call != TL_TLS_CALL_ASK)
		return a->tls_call;
	struct tl_io_args *slot = bpf_task_storage_get(&io_args_task, bpf_get_current_task_btf(), 0, 0);
	return slot && slot->tls_call;
}
