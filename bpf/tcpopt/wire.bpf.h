/* SPDX-License-Identifier: GPL-2.0-only */
/* Trace context in a TCP header option: the option's layout on the wire and the maps the sockops
 * program (bpf/tcp_option.bpf.c) shares with the capture object (bpf/capture/tcp_option.bpf.h).
 * The capture object creates the maps; the tcp_option object reuses them by fd before load
 * (agent/kernel/tcp_option_program.cpp), so there is one instance of each per agent. Two agents
 * on one node have two instances: each acts only for the processes it traces.
 *
 * Wire format (docs/cross-service.md says why): kind 25, the layout OpenTelemetry eBPF
 * Instrumentation (OBI) writes, so the two read each other's context:
 *   kind 25 | len 26 | trace id (16) | span id (8)                 trace-flags 01 (sampled)
 *   kind 25 | len 27 | trace id (16) | span id (8) | trace-flags    any other flags
 * span id is the sender's CLIENT span. 28 bytes of option space once padded: with timestamps
 * (12) that is all 40 a TCP header has, so SACK blocks or any other option leave no room.
 *
 * Which segment: the one carrying the first byte of a new request. The send syscall's entry
 * records that byte's sequence number (tp->write_seq then: nothing of this send is queued yet)
 * with the ids (opt_tx); the sockops program writes the option on the segment whose range
 * holds it, on its first transmission and on retransmissions until it is acknowledged. GSO
 * copies the option onto every segment of one super-packet and GRO merges them back, so a
 * receiver sees it on a range of bytes: the request it names is the first one starting there.
 * Both ends' agents agree on that rule: the ids belong to the first request starting at or after
 * the start of the write (sender) or of the range (receiver) that carried them; an HTTP/2 preface
 * write carries the context of the first HEADERS frame, wherever that frame falls.
 *
 * Receiving side: the parse callback keeps what arrived per socket (opt_rx), with the sequence
 * range of the segment(s) that carried it; the capture object's read exit maps sequence numbers
 * to its stream positions (tp->copied_seq at the read) and reports the context tied to that
 * stream range (TL_CTX_REMOTE). */
#pragma once

#define TL_OPT_KIND 25
#define TL_OPT_LEN_SAMPLED 26 /* trace-flags 01 */
#define TL_OPT_LEN_FLAGS 27   /* trace-flags in the last byte */
#define TL_OPT_SPACE 28       /* what either takes of the 40 bytes, padded to 4 */

struct tl_tcp_option {
	__u8 kind;
	__u8 len;
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 trace_flags; /* on the wire only when len == TL_OPT_LEN_FLAGS */
	__u8 _pad;
};

/* Request starts tracked per client socket: more may be in flight when requests are pipelined;
 * a start is done once acknowledged. Power of two (ring index mask). */
#define TL_OPT_SLOTS 4

/* A request start on a client socket, recorded by the send that queued its first byte. */
struct tl_opt_start {
	__u32 seq;        /* TCP sequence number of the request's first byte */
	__u8 trace_flags;
	__u8 written;     /* an option naming it went out (at least once) */
	__u8 shared;      /* its segment went out with an earlier start's option */
	__u8 _pad;
	__u8 trace_id[16];
	__u8 span_id[8];  /* the client span */
};

/* Value of "opt_tx" (key: struct sock * of an armed client socket). One writer adds starts (the
 * send path, advancing head), one reader retires them (the sockops program, under the socket
 * lock, advancing tail): a ring that needs no lock. */
struct tl_opt_tx {
	__u32 head;
	__u32 tail;
	__u8 mss_room;  /* the last MSS calculation reserved option space (sizes agree with it) */
	__u8 reserved;  /* option space was reserved for the segment being built now */
	__u8 _pad[6];
	struct tl_opt_start starts[TL_OPT_SLOTS];
};

/* An option that arrived on a socket, until a read reaches the bytes it came with. */
struct tl_opt_seen {
	__u32 seq;        /* first byte of the segment(s) that carried it */
	__u32 end;        /* one past their last byte */
	__u8 trace_id[16];
	__u8 span_id[8];  /* the sender's client span: the parent */
	__u8 trace_flags;
	__u8 done;        /* reported (set by the reading side) */
	__u8 tls_pending; /* read as TLS ciphertext: reported with the next plaintext read */
	__u8 _pad[5];
	__u64 plain_pos;  /* tls_pending: plaintext stream position of that next read */
};

/* Value of "opt_rx" (key: struct sock *). The parse callback adds (head), reads retire (tail). */
struct tl_opt_rx {
	__u32 head;
	__u32 tail;
	struct tl_opt_seen seen[TL_OPT_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tl_opt_tx);
} opt_tx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tl_opt_rx);
} opt_rx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TL_OPT__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} tcpopt_stats SEC(".maps");

static __always_inline void tcpopt__count(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&tcpopt_stats, &what);
	if (c)
		*c += 1;
}

/* Sequence-number order (RFC 793 arithmetic): is a before b? */
static __always_inline bool seq__before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

/* Is s in [lo, lo + len)? */
static __always_inline bool seq__within(__u32 s, __u32 lo, __u32 len)
{
	return s - lo < len;
}
