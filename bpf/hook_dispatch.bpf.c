// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench/hook_dispatch: what the kernel's dispatch costs per syscall for each way of hooking
 * syscalls, with programs that do only the capture programs' first step (is this process
 * traced? one bit of an array, as proc__maybe_selected) and return.
 *
 *   tracepoints  syscalls:sys_{enter,exit}_* for the syscalls wanted (the capture object's
 *                way; a write+read pair runs three: write's entry and exit, read's exit).
 *                The kernel runs perf_syscall_{enter,exit} for every syscall of every task,
 *                which stops at a bitmap test for syscalls without a program.
 *   raw_tp       raw_syscalls:sys_enter/sys_exit as raw tracepoints: one program each, run
 *                for every syscall of every task, dispatching on the syscall number.
 *   tp_btf       the same two as BTF tracepoints (typed arguments, plain loads).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* (pid_max + 63) / 64, set before load */
	__type(key, __u32);
	__type(value, __u64);
} hint SEC(".maps");

__u64 traced_runs = 0;

static __always_inline int traced(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 word = tgid / 64;
	__u64 *bits = bpf_map_lookup_elem(&hint, &word);
	if (!bits || !(*bits & (1ull << (tgid & 63))))
		return 0;
	__sync_fetch_and_add(&traced_runs, 1);
	return 1;
}

/* x86-64 numbers of the syscalls the capture object hooks at entry (sends, connect, close,
 * dup2/3) and at exit (those and the receives, accept, accept4). */
static __always_inline bool wanted_at_entry(long id)
{
	switch (id) {
	case 1: case 20: case 44: case 46: case 307: case 40: case 42: case 3: case 33: case 292:
		return true;
	}
	return false;
}

static __always_inline bool wanted_at_exit(long id)
{
	switch (id) {
	case 0: case 1: case 19: case 20: case 44: case 45: case 46: case 47: case 299: case 307:
	case 40: case 42: case 43: case 288:
		return true;
	}
	return false;
}

SEC("tracepoint/syscalls/sys_enter_write") int tp_enter_write(void *ctx) { traced(); return 0; }
SEC("tracepoint/syscalls/sys_exit_write") int tp_exit_write(void *ctx) { traced(); return 0; }
SEC("tracepoint/syscalls/sys_exit_read") int tp_exit_read(void *ctx) { traced(); return 0; }

SEC("raw_tracepoint/sys_enter")
int raw_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (wanted_at_entry((long)ctx->args[1]))
		traced();
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int raw_exit(struct bpf_raw_tracepoint_args *ctx)
{
	/* sys_exit carries (regs, ret): the number is in the saved registers. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (regs && wanted_at_exit(regs->orig_ax))
		traced();
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(btf_enter, struct pt_regs *regs, long id)
{
	if (wanted_at_entry(id))
		traced();
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(btf_exit, struct pt_regs *regs, long ret)
{
	if (wanted_at_exit(regs->orig_ax))
		traced();
	return 0;
}
