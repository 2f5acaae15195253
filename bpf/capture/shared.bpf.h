/* SPDX-License-Identifier: GPL-2.0-only */
/* The part of the capture object the injection object (bpf/inject.bpf.c) links too: the
 * selection rule with its settings and map, and the maps the sk_msg program reads. Declared once
 * here so both objects see the same layout; the capture object creates the maps and the
 * injection object reuses them by fd before load (agent/kernel/injector.cpp), so there is one
 * instance of each (as for inject/ids.bpf.h). */
#pragma once

/* Load-time settings (rodata), set in each object by its loader. */
const volatile __u32 agent_tgid = 0;
const volatile bool trace_all = true; /* false: only tgids marked in "selected" */

/* A syscall in progress (map "io_args"), stashed at entry for the exit. */
struct tl_io_args {
	__u64 enter_ts;
	__u64 buf;   /* user buffer, iovec array, msghdr or mmsghdr array */
	__s32 fd;
	__u32 count; /* buffer length, iovcnt or vlen */
	__u32 flags; /* recv/send flags */
	__u8 syscall;
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct tl_io_args);
} io_args SEC(".maps");

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

/* TLS (tls.bpf.h): SSL_* calls in progress, by thread. An entry lives from the entry uprobe to
 * the return uprobe (or the thread's exit), so the map holds at most one per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct tl_tls_call);
} tls_calls SEC(".maps");

/* Is this process traced? The agent never traces itself. */
static __always_inline bool proc__selected(__u32 tgid)
{
	if (tgid == agent_tgid)
		return false;
	struct tl_selection *s = bpf_map_lookup_elem(&selected, &tgid);
	if (s)
		return (s->flags & TL_SEL_TRACE) && !(s->flags & TL_SEL_EXCLUDE);
	return trace_all;
}
