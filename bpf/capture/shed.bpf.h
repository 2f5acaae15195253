/* SPDX-License-Identifier: GPL-2.0-only */
/* Load shedding under the agent's CPU budget (agent/app/cpu_budget.h decides the fraction).
 *
 * Shedding is by connection, decided when a connection is first seen (conn__get): a new
 * connection whose tuple hash falls below the threshold is tracked but never captured (no data,
 * no lifecycle events), so it is traced whole or not at all, never cut mid-stream. The same
 * threshold is applied again at each request boundary of an established connection
 * (shed_turn.bpf.h): there a captured connection is ended for userspace and a shed one resumes,
 * so a keep-alive load is shed too, and never in the middle of an exchange. The hash is of the unordered endpoint pair: both ends of a connection on this
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

/* One endpoint. An IPv4 address (AF_INET: 4 bytes, the rest zero) and its v4-mapped IPv6 form
 * (::ffff:a.b.c.d) fold to the same word, so both ends agree when one socket is AF_INET6. */
static __always_inline __u32 shed__endpoint(const __u8 *addr, __u16 port)
{
	__u32 w[4];
	__builtin_memcpy(w, addr, sizeof(w));
	__u32 a = w[0] ^ w[1] ^ (w[2] & ~bpf_htonl(0xffff)) ^ w[3];
	return shed__mix(a ^ shed__mix(0x9e3779b9u + port));
}

static __always_inline __u32 shed__conn_hash(const struct tl_tuple *t)
{
	/* A sum: the same for (local, peer) and (peer, local). */
	return shed__mix(shed__endpoint(t->saddr, t->sport) + shed__endpoint(t->daddr, t->dport));
}

/* Counts a shed connection: when it is enrolled (bytes 0), and the bytes it moved when it is
 * closed. */
static __always_inline void shed__count(__u64 conns, __u64 bytes)
{
	__u32 zero = 0;
	struct tl_shed_counts *c = bpf_map_lookup_elem(&shed_counts, &zero);
	if (!c)
		return;
	c->conns += conns; /* per-CPU slot: no atomics needed */
	c->bytes += bytes;
}

/* A new connection (its tuple filled in): keeps its hash for the request boundaries
 * (shed_turn.bpf.h) and returns TL_IGNORED_SHED (counted) or 0. A global function, verified
 * once on its own: inlined into every program that enrols connections, its branches multiplied
 * the verifier's states in sendmmsg/recvmmsg (8 messages in a loop) past the 1M-instruction
 * limit. The caller sees a scalar. The hash is computed here once, not at each boundary: its
 * byte loads spill registers, and that frame on top of sendmmsg's did not fit the 512-byte
 * stack. */
__noinline int shed__new_conn(struct tl_conn_state *fresh)
{
	if (!fresh)
		return 0;
	fresh->shed_hash = shed__conn_hash(&fresh->tuple);
	if ((__u64)fresh->shed_hash >= tl_shed_below)
		return 0;
	shed__count(1, 0);
	return TL_IGNORED_SHED;
}
