// SPDX-License-Identifier: GPL-2.0-only
/*
 * Capability probes: one tiny program per kind of hook the agent may use.
 *
 * Userspace (agent/capabilities/capability_probe.cpp) opens this object once per kind, turns
 * autoload off for every program but that kind's and autocreate off for the maps it does not
 * use, loads, attaches, triggers the hook itself and reads back what the program saw. So a
 * kind is "available" only when this kernel really loaded, attached and ran it; symbols are
 * never looked up (bpftrace's BPFfeature).
 *
 * Each program does one observable thing (bump `hits`, record a value, emit a ring-buffer
 * record) and only for the probing thread, so nothing else running on the host (or in the
 * agent) can make a probe look like it worked, and the probe never touches another process.
 *
 * No program here has a CO-RE relocation: one anywhere in the object makes libbpf parse the
 * kernel's BTF at every load (~30 ms each), and the probe runs at every agent start. Only the
 * kinds that cannot work without kernel BTF (tp_btf, fentry) pay for it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

/* Load-time settings, written by userspace between open and load. */
/* The probing thread as seen from its own pid namespace, plus that namespace's nsfs dev/ino:
 * bpf_get_current_pid_tgid() reports init-namespace ids, which differ from getpid()/gettid()
 * when the agent runs in a container without hostPID. */
const volatile __u64 self_pidns_dev = 0;
const volatile __u64 self_pidns_ino = 0;
const volatile __u32 self_tgid = 0;
const volatile __u32 self_tid = 0;
/* Syscall number of the trigger (getppid) for the programs that see every syscall. */
const volatile __s64 trigger_syscall_nr = -1;
/* What the ring-buffer probe emits and what the write-user probe writes, chosen by userspace
 * so a stale or foreign value can never be mistaken for success. */
const volatile __u64 ringbuf_cookie = 0;
const volatile __u64 write_user_magic = 0;
const volatile __u64 write_user_addr = 0;

/* Results, read back by userspace through the skeleton's bss. */
__u64 hits = 0;
__u64 exit_hits = 0;
__u64 observed = 0;
/* Set by userspace between fork() and letting the child run: the child's pid in our pid
 * namespace, whose exit the sched probe waits for. */
__u32 exit_watch_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} probe_events SEC(".maps");

/* sk_msg programs attach to a sockmap/sockhash, not to a hook point. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} probe_sockhash SEC(".maps");

/* struct bpf_pidns_info's uapi layout, declared here without vmlinux.h's
 * preserve_access_index so that reading it needs no CO-RE relocation. */
struct probe_pidns_info {
	__u32 pid;
	__u32 tgid;
};

static __always_inline bool probe__is_self(void)
{
	struct probe_pidns_info ns = {};

	if (bpf_get_ns_current_pid_tgid(self_pidns_dev, self_pidns_ino,
					(struct bpf_pidns_info *)&ns, sizeof(ns)))
		return false; /* current task is not in our pid namespace: not us */
	return ns.tgid == self_tgid && ns.pid == self_tid;
}

/* pt_regs is uapi-stable per architecture; offsetof is a compile-time constant, so these reads
 * need no CO-RE relocation (PT_REGS_PARM1() on vmlinux.h's pt_regs would). */
static __always_inline __u64 probe__regs_arg1(void *ctx)
{
	return *(__u64 *)((char *)ctx + __builtin_offsetof(struct pt_regs, __PT_PARM1_REG));
}

static __always_inline __u64 probe__regs_ret(void *ctx)
{
	return *(__u64 *)((char *)ctx + __builtin_offsetof(struct pt_regs, __PT_RC_REG));
}

static __always_inline void probe__hit(void)
{
	__sync_fetch_and_add(&hits, 1);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_syscall_tp(void *ctx)
{
	if (probe__is_self())
		probe__hit();
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int probe_sock_tp(void *ctx)
{
	if (probe__is_self())
		probe__hit();
	return 0;
}

/* Process lifecycle: fork is seen in the parent (the probing thread), exit in the child, which
 * userspace names in exit_watch_tgid before the child may exit. exec is attached to prove it
 * attaches; the probe does not exec anything, so it is not expected to fire. */
SEC("tracepoint/sched/sched_process_fork")
int probe_sched_fork(void *ctx)
{
	if (probe__is_self())
		probe__hit();
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int probe_sched_exit(void *ctx)
{
	struct probe_pidns_info ns = {};

	if (exit_watch_tgid == 0)
		return 0;
	if (bpf_get_ns_current_pid_tgid(self_pidns_dev, self_pidns_ino,
					(struct bpf_pidns_info *)&ns, sizeof(ns)))
		return 0;
	if (ns.tgid == exit_watch_tgid)
		__sync_fetch_and_add(&exit_hits, 1);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int probe_sched_exec(void *ctx)
{
	if (probe__is_self())
		probe__hit();
	return 0;
}

/* tp_btf and raw_tracepoint both see every syscall entry; the syscall number is checked first
 * so the namespace helper only runs for the trigger. */
SEC("tp_btf/sys_enter")
int BPF_PROG(probe_tp_btf, struct pt_regs *regs, long id)
{
	if (id == trigger_syscall_nr && probe__is_self())
		probe__hit();
	return 0;
}

/* ctx is struct bpf_raw_tracepoint_args, read as its u64 array to avoid a CO-RE relocation. */
SEC("raw_tracepoint/sys_enter")
int probe_raw_tp(__u64 *ctx)
{
	if ((__s64)ctx[1] == trigger_syscall_nr && probe__is_self())
		probe__hit();
	return 0;
}

/* Attached by userspace to a function in the agent's own binary, pid-filtered as well. */
SEC("uprobe")
int probe_uprobe(struct pt_regs *ctx)
{
	if (!probe__is_self())
		return 0;
	observed = probe__regs_arg1(ctx);
	probe__hit();
	return 0;
}

SEC("uretprobe")
int probe_uretprobe(struct pt_regs *ctx)
{
	if (!probe__is_self())
		return 0;
	observed = probe__regs_ret(ctx);
	probe__hit();
	return 0;
}

/* A uprobe session (BPF_TRACE_UPROBE_SESSION, Linux 6.13+; userspace loads it with that
 * expected_attach_type and attaches it with a uprobe_multi link): the program runs at a call's
 * entry and, when the entry returned 0, at its return. The probe calls the function twice: the
 * first entry asks for its return (run 2), the second entry declines it (returns 1), so exactly
 * three runs prove both what the TLS probes rely on (bpf/capture/tls.bpf.h tls__session). The
 * probing thread is the only caller, so `hits` needs no atomic fetch. */
SEC("uprobe")
int probe_uprobe_session(struct pt_regs *ctx)
{
	if (!probe__is_self())
		return 1;
	__u64 run = hits;
	hits = run + 1;
	if (run == 0)
		observed = probe__regs_arg1(ctx);
	return run == 0 ? 0 : 1;
}

/* hrtimer_nanosleep: a global, non-inlined, arch-independent function every nanosleep() and
 * clock_nanosleep() goes through. */
SEC("kprobe/hrtimer_nanosleep")
int probe_kprobe(void *ctx)
{
	if (probe__is_self())
		probe__hit();
	return 0;
}

SEC("fentry/hrtimer_nanosleep")
int probe_fentry(void *ctx)
{
	if (probe__is_self())
		probe__hit();
	return 0;
}

/* Only sockets userspace put into probe_sockhash reach this program, so no tgid filter. */
SEC("sk_msg")
int probe_sk_msg(struct sk_msg_md *msg)
{
	probe__hit();
	return SK_PASS;
}

/* Attached to a cgroup created for the probe that holds only the probe's own child. */
SEC("sockops")
int probe_sockops(struct bpf_sock_ops *skops)
{
	probe__hit();
	return 1;
}

/* The header-option callbacks the TCP trace-context option needs (bpf/tcp_option.bpf.c), in a
 * cgroup created for the probe whose only process is the probe's child: it connects to its own
 * loopback listener, so both ends are in the cgroup. The client end reserves and writes an
 * option (kind 25, length 26, the probe's cookie in its first 8 bytes of id) on each segment
 * with payload; the accepted end parses it. `observed` counts options written, `hits` options
 * read back with the cookie. */
#define PROBE_OPT_KIND 25
#define PROBE_OPT_LEN 26
struct probe_tcp_option {
	__u8 kind;
	__u8 len;
	__u8 id[24];
	__u8 _pad[2];
};

struct probe_tcphdr {
	__u8 ports_seq_ack[12];
	__u8 doff_res;
	__u8 flags;
	__u8 rest[6];
};

SEC("sockops")
int probe_hdr_opt(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						 BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						 BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG);
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		/* The MSS calculation (no segment) and segments with payload; never a SYN. */
		if (skops->args[0] == BPF_WRITE_HDR_TCP_CURRENT_MSS ||
		    (skops->skb_len > 0 && !(skops->skb_tcp_flags & 0x02)))
			bpf_reserve_hdr_opt(skops, 28, 0);
		break;
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB: {
		void *data = (void *)(long)skops->skb_data;
		void *data_end = (void *)(long)skops->skb_data_end;
		struct probe_tcphdr *th = data;
		if ((void *)(th + 1) > data_end || skops->skb_len <= (__u32)(th->doff_res >> 4) * 4)
			break;
		struct probe_tcp_option opt = {.kind = PROBE_OPT_KIND, .len = PROBE_OPT_LEN};
		__u64 cookie = ringbuf_cookie;
		__builtin_memcpy(opt.id, &cookie, sizeof(cookie));
		if (bpf_store_hdr_opt(skops, &opt, PROBE_OPT_LEN, 0) == 0)
			__sync_fetch_and_add(&observed, 1);
		break;
	}
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB: {
		struct probe_tcp_option opt = {.kind = PROBE_OPT_KIND};
		__u64 cookie = 0;
		if (bpf_load_hdr_opt(skops, &opt, sizeof(opt), 0) != PROBE_OPT_LEN)
			break;
		__builtin_memcpy(&cookie, opt.id, sizeof(cookie));
		if (cookie == ringbuf_cookie)
			probe__hit();
		break;
	}
	}
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_ringbuf(void *ctx)
{
	__u64 record = ringbuf_cookie;

	if (!probe__is_self())
		return 0;
	if (bpf_ringbuf_output(&probe_events, &record, sizeof(record), 0) == 0)
		probe__hit();
	return 0;
}

/* Expected to be refused by the verifier under kernel lockdown. Where it loads, it writes only
 * into a variable of the probing process, at an address that process chose. */
SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_write_user(void *ctx)
{
	__u64 value = write_user_magic;

	if (!probe__is_self())
		return 0;
	if (bpf_probe_write_user((void *)write_user_addr, &value, sizeof(value)) == 0)
		probe__hit();
	return 0;
}
