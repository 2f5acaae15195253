/* SPDX-License-Identifier: GPL-2.0-only */
/* Process lifecycle: exec (for selection by executable), fork (children inherit selection),
 * exit (userspace closes the process's connections and forgets it). */
#pragma once

/* At sched_process_exec the new image is committed: mm->exe_file is the new file and the
 * argument strings sit at the top of the new stack, just written by the kernel (so present). */
static __always_inline void proc__exec_identity(struct tl_proc_event *e, struct task_struct *task)
{
	e->start_boottime_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	const unsigned char *name = BPF_CORE_READ(mm, exe_file, f_path.dentry, d_name.name);
	long n = bpf_probe_read_kernel_str(e->exe_name, sizeof(e->exe_name), name);
	if (n <= 0 || n == sizeof(e->exe_name))
		e->exe_name[0] = 0; /* unreadable, or longer than we keep: say nothing */
	__u64 start = BPF_CORE_READ(mm, arg_start);
	__u64 len = BPF_CORE_READ(mm, arg_end) - start;
	if (len > TL_ARGS_LEN - 1)
		len = TL_ARGS_LEN - 1;
	len &= TL_ARGS_LEN - 1; /* the verifier's bound on the copy */
	if (len && bpf_probe_read_user(e->args, len, (const void *)start) == 0)
		e->args_len = len;
}

static __always_inline void proc__emit(__u32 type, __u64 pid_tgid, __u32 tgid, __u32 ppid,
				       __s32 exit_code, void *filename_src)
{
	struct tl_proc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		drops__count(TL_DROP_CTRL_RING_FULL);
		return;
	}
	event__header(&e->hdr, type, pid_tgid);
	e->hdr.tgid = tgid;
	e->ppid = ppid;
	e->exit_code = exit_code;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->filename[0] = 0;
	e->start_boottime_ns = 0;
	e->args_len = 0;
	e->exe_name[0] = 0;
	if (filename_src)
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename_src);
	if (type == TL_EV_PROC_EXEC)
		proc__exec_identity(e, (struct task_struct *)bpf_get_current_task());
	/* An exec is urgent: the new program may open its first connection within milliseconds. */
	bpf_ringbuf_submit(e, type == TL_EV_PROC_EXEC ? ring__flags_urgent() : ring__flags());
}

/* Every exec is reported (not only traced ones): selection by executable is decided in
 * userspace when the new image is known. Execs are rare next to socket I/O. */
static __always_inline void proc__on_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	if (tgid == agent_tgid)
		return;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (agent_exe_ino) {
		/* At sched_process_exec the new image is committed: mm->exe_file is the new file. */
		struct file *exe = BPF_CORE_READ(task, mm, exe_file);
		if (exe && BPF_CORE_READ(exe, f_inode, i_ino) == agent_exe_ino &&
		    BPF_CORE_READ(exe, f_inode, i_sb, s_dev) == agent_exe_dev) {
			struct tl_selection s = {.flags = TL_SEL_EXCLUDE | TL_SEL_INHERIT};
			proc__hint_set(tgid);
			if (bpf_map_update_elem(&selected, &tgid, &s, BPF_ANY))
				drops__count(TL_DROP_SELECT_MAP_FULL);
			return;
		}
	}
	if (tl_ctx_classify_on) {
		__u8 one = 1;
		bpf_map_update_elem(&ctx_unclassified, &tgid, &one, BPF_ANY);
	}
	__u32 ppid = BPF_CORE_READ(task, real_parent, tgid);
	__u32 off = ctx->__data_loc_filename & 0xFFFF;
	proc__emit(TL_EV_PROC_EXEC, pid_tgid, tgid, ppid, 0, (void *)ctx + off);
}

static __always_inline void proc__on_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ptgid == ctgid)
		return; /* a new thread, not a new process */
	struct tl_selection *s = proc__selection(ptgid);
	if (s && (s->flags & TL_SEL_INHERIT)) {
		struct tl_selection copy = *s;
		proc__hint_set(ctgid);
		if (bpf_map_update_elem(&selected, &ctgid, &copy, BPF_ANY))
			drops__count(TL_DROP_SELECT_MAP_FULL);
	}
	if (!proc__selected(ptgid))
		return;
	proc__emit(TL_EV_PROC_FORK, bpf_get_current_pid_tgid(), ctgid, ptgid, 0, NULL);
}

static __always_inline void proc__on_exit(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!args_task_storage) /* task storage goes with the task */
		bpf_map_delete_elem(&io_args, &pid_tgid); /* a thread killed inside a syscall */
	bpf_map_delete_elem(&tls_calls, &pid_tgid); /* ... or inside an SSL_* call */
	bpf_map_delete_elem(&tls_thread_fd, &pid_tgid);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return; /* other threads of the process still run */
	__u32 tgid = pid_tgid >> 32;
	bool traced = proc__selected(tgid);
	if (bpf_map_delete_elem(&selected, &tgid) == 0)
		proc__hint_clear(tgid);
	if (!traced)
		return;
	proc__emit(TL_EV_PROC_EXIT, pid_tgid, tgid, 0, BPF_CORE_READ(task, exit_code), NULL);
}
