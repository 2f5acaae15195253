/* SPDX-License-Identifier: GPL-2.0-only */
/* Load shedding under the agent's CPU budget (agent/app/cpu_budget.h decides the fraction).
 *
 * Shedding is by connection, decided once when a connection is first seen (conn__get): a new
 * connection whose tuple hash falls below the threshold is tracked but never captured (no data,
 * no lifecycle events), so every connection is either traced whole or not at all, never cut
 * mid-stream. The hash is of the unordered endpoint pair: both ends of a connection on this
 * node (and the peer's agent, without NAT) make the same decision, so a client span and its
 * server span are kept or shed together. A higher fraction sheds a superset of what a lower one
 * sheds. What is skipped is counted here (the agent exports it as threadline_load_shed_*). */
#pragma once

/* Connections whose hash (32 bits) is below this are shed: fraction * 2^32; 0: none, 2^32: all.
 * Written by userspace (CaptureProgram::SetShedFraction). */
__u64 tl_shed_below = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_shed_counts);
} shed_counts SEC(".maps");

static __always_inline __u32 shed__mix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* One endpoint; an IPv4-mapped IPv6 address hashes as the IPv4 one (the other end's socket may
 * be AF_INET). */
static __always_inline __u32 shed__endpoint(const __u8 *addr, __u16 family, __u16 port)
{
	__u32 w[4];
	__builtin_memcpy(w, addr, sizeof(w));
	__u32 a = w[0];
	if (family != TL_AF_INET)
		a = (!w[0] && !w[1] && w[2] == bpf_htonl(0xffff)) ? w[3] : w[0] ^ w[1] ^ w[2] ^ w[3];
	return shed__mix(a ^ shed__mix(0x9e3779b9u + port));
}

static __always_inline __u32 shed__conn_hash(const struct tl_tuple *t)
{
	/* A sum: the same for (local, peer) and (peer, local). */
	return shed__mix(shed__endpoint(t->saddr, t->family, t->sport) +
			 shed__endpoint(t->daddr, t->family, t->dport));
}

/* Counts what a shed connection skipped: one connection when it is enrolled, then each data
 * syscall and its bytes. */
static __always_inline void shed__count(__u64 conns, __u64 calls, __u64 bytes)
{
	__u32 zero = 0;
	struct tl_shed_counts *c = bpf_map_lookup_elem(&shed_counts, &zero);
	if (!c)
		return;
	c->conns += conns; /* per-CPU slot: no atomics needed */
	c->calls += calls;
	c->bytes += bytes;
}

/* The two entry points are global functions, verified once on their own: inlined, the hash's
 * branches multiplied the verifier's states in the programs that enrol connections in a loop
 * (sendmmsg/recvmmsg: 8 messages) past its 1M-instruction budget. Callers see a scalar. */

/* A new connection: TL_IGNORED_SHED (counted) or 0. */
__noinline int shed__new_conn(const struct tl_tuple *t)
{
	if (!t)
		return 0;
	__u64 below = tl_shed_below;
	if (!below || (__u64)shed__conn_hash(t) >= below)
		return 0;
	shed__count(1, 0, 0);
	return TL_IGNORED_SHED;
}

/* A data syscall on an ignored connection (tl_conn_state.ignored): counted when it is shed. */
__noinline int shed__skipped_io(__u32 ignored, __u64 size)
{
	if (ignored == TL_IGNORED_SHED)
		shed__count(0, 1, size);
	return 0;
}
