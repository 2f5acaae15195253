/* SPDX-License-Identifier: GPL-2.0-only */
/* Maps and load-time settings of the capture object, and the small helpers every concern uses. */
#pragma once

#define TL_AF_INET 2
#define TL_AF_INET6 10
#define TL_SOCK_STREAM 1
#define TL_S_IFMT 00170000
#define TL_S_IFSOCK 0140000
#define TL_EINPROGRESS 115
#define TL_MSG_PEEK 0x2
#define TL_MSG_TRUNC 0x20
#define TL_TCP_CLOSE 7

#ifndef barrier_var
#define barrier_var(var) asm volatile("" : "+r"(var))
#endif

/* agent_tgid, the selection filters and maps (selected, selected_cgroups, ports), io_args, conns,
 * tls_calls, proc__selected and ports__selected: shared with the injection and TCP option
 * objects. */
#include "capture/shared.bpf.h"

/* More load-time settings (rodata): fixed before load, read as constants by the verifier. */
/* The agent's executable (inode number and kernel dev_t of its filesystem): processes that exec
 * it are other threadline agents (a second instance, a restart overlapping the old one) and are
 * excluded with their children the moment they exec, so agents never trace each other. */
const volatile __u64 agent_exe_ino = 0;
const volatile __u32 agent_exe_dev = 0;
const volatile __u32 capture_bytes = 4096;  /* payload prefix per event, power of two */
const volatile __u64 ring_data_limit = 0;   /* data events stop when the ring holds this much */
/* Reader wake-ups. 0: the kernel's default, a wake-up whenever an event lands in a ring the
 * reader had caught up with, i.e. for nearly every event of a fast reader. Each one is an
 * irq_work whose self-IPI is an APIC write: a VM exit on virtual machines, measured at about
 * half the extra cost of a traced syscall on our 2-vCPU VM (bench/probes_bench). Non-zero:
 * events go in without a wake-up until the ring holds this many bytes; the reader also wakes
 * on its own clock (RingConsumer::Poll consumes after every timeout), so a quiet ring is
 * delivered within one poll interval and a busy one in batches. Execs always wake it
 * (proc__emit): userspace selects by executable and attaches uprobes when it reads them. */
const volatile __u64 ring_wakeup_bytes = 0;

/* Single ring for every event: one ring keeps open/data/close in order across CPUs. Data
 * events leave headroom (ring_data_limit) so lifecycle events still fit when data floods. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by the agent before load */
} events SEC(".maps");

/* Flags for committing an event to `events` with the ring currently holding `avail` bytes. */
static __always_inline __u64 ring__flags_at(__u64 avail)
{
	if (!ring_wakeup_bytes)
		return 0;
	return avail >= ring_wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline __u64 ring__flags(void)
{
	if (!ring_wakeup_bytes)
		return 0;
	return ring__flags_at(bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA));
}

/* For an event userspace must act on before the process it names goes on (an exec: selection
 * by executable and the uprobe attach): wakes the reader whatever the ring holds. */
static __always_inline __u64 ring__flags_urgent(void)
{
	return ring_wakeup_bytes ? BPF_RB_FORCE_WAKEUP : 0;
}

/* Connection generations: one global counter, so (tgid, fd, gen) never repeats. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_counter SEC(".maps");

/* Which socket fd each SSL object uses, learned from the syscall made under an SSL_* call, so an
 * SSL_read served from OpenSSL's own buffer (no syscall underneath) still finds its connection.
 * LRU: SSL_free is not hooked, stale entries age out; a live SSL object refreshes its entry on
 * every call that does I/O. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tl_tls_key);
	__type(value, __s32); /* fd */
} tls_conns SEC(".maps");

/* Plaintext bytes of SSL_write calls that were emitted (at their first socket write) but not
 * reported written by the call (WANT_WRITE after a partial write, or partial-write mode): the
 * library's next SSL_write on that object passes them again, and must not emit them twice. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tl_tls_key);
	__type(value, __u64); /* bytes */
} tls_write_credit SEC(".maps");

/* The TLS connection each thread last moved ciphertext on. Libraries that drive OpenSSL through
 * memory BIOs (Node's TLSWrap) never make a syscall under SSL_read/SSL_write: the event loop
 * reads the ciphertext from the socket, feeds it to the SSL object and calls SSL_read right
 * after, on the same thread. That socket is the SSL object's connection; it is learned once per
 * SSL object (tls_conns) and reused for its writes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, __s32); /* fd */
} tls_thread_fd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TL_DROP__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void drops__count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&drops, &reason);
	if (c)
		*c += 1; /* per-CPU slot: no atomics needed */
}

/* Sets an fd-valued entry (tls_thread_fd, tls_conns), writing only when the fd changes: callers
 * run on every TLS call or ciphertext syscall, where the fd is almost always the one already
 * there, and an LRU update costs far more than a lookup. */
static __always_inline void fd_map__set(void *map, const void *key, __s32 fd)
{
	__s32 *known = bpf_map_lookup_elem(map, key);
	if (known && *known == fd)
		return;
	bpf_map_update_elem(map, key, &fd, BPF_ANY);
}

static __always_inline void event__header(struct tl_event_header *h, __u32 type, __u64 pid_tgid)
{
	h->type = type;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->tgid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
}
