// SPDX-License-Identifier: GPL-2.0-only
/*
 * threadline trace context in a TCP header option: a sockops program on the cgroup v2 root that
 * writes the context of a request onto the segment carrying its first byte (client sockets of
 * traced processes) and reads it on arriving segments (every passive socket). The format, the
 * maps and how a request start becomes a sequence number are in bpf/tcpopt/wire.bpf.h; the
 * capture object records the starts (at the send's entry) and ties what arrived to its reads.
 *
 * Never harms the connection:
 *   - only client sockets whose connect() a traced process made get the write callbacks
 *     (TCP_CONNECT_CB runs in that process: its selection and the port filter are checked
 *     there); no option on a SYN, a RST or a segment without payload;
 *   - no payload byte changes; the option either fits in the header's 40 bytes or is skipped
 *     and counted (timestamps take 12, SACK blocks or TCP-MD5 the rest);
 *   - MSS: while a request start is unacknowledged the MSS calculation (tcp_current_mss, the
 *     callback without an skb) reserves the option's space, so every segment built meanwhile
 *     leaves room for it; a segment only gets the option when that calculation had room (a
 *     segment never grows past the size the stack chose for it);
 *   - reading only looks: other sockets and processes are not affected; an untraced receiver
 *     (no agent) ignores the unknown option as TCP requires.
 * Several agents on one node: each has its own maps and acts only for the processes it traces.
 * When two trace the same client, the first program to store the option wins; the other gets
 * -EEXIST or no room and counts it (the kernel never lets one kind appear twice).
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "threadline/events.h"

#include "capture/shared.bpf.h"
#include "tcpopt/wire.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define TL_TCP_SYN 0x02
#define TL_TCP_RST 0x04
#define TL_EEXIST 17

/* Run-time switch (.bss, written by userspace). Off: nothing is armed, read or written. */
__u32 tcpopt_on = 0;

struct tl_tcphdr_min {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res; /* doff in the high nibble */
	__u8 flags;
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

#ifndef barrier
#define barrier() asm volatile("" ::: "memory")
#endif

/* The socket's struct sock address: the key of opt_tx/opt_rx, as the capture object knows it
 * (tl_conn_state.sk). 0 when the callback has no full socket. */
static __always_inline __u64 sk__key(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 0;
	return (__u64)sk;
}

static __always_inline bool ids__equal(const __u8 *a, const __u8 *b, const int words)
{
	for (int k = 0; k < words; k++) {
		__u64 x, y;
		__builtin_memcpy(&x, a + 8 * k, 8);
		__builtin_memcpy(&y, b + 8 * k, 8);
		if (x != y)
			return false;
	}
	return true;
}

/* TCP_CONNECT_CB: the application's connect(), before its SYN. */
static __always_inline void tcpopt__arm(struct bpf_sock_ops *skops)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!proc__selected(tgid))
		return;
	if (!ports__selected((__u16)skops->local_port, bpf_ntohl(skops->remote_port) & 0xffff))
		return;
	__u64 key = sk__key(skops);
	if (!key)
		return;
	struct tl_opt_tx fresh = {};
	if (bpf_map_update_elem(&opt_tx, &key, &fresh, BPF_ANY))
		return;
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
	tcpopt__count(TL_OPT_ARMED);
}

/* Retires the starts the peer acknowledged (their options did their job, or never will). */
static __always_inline void tcpopt__retire(struct tl_opt_tx *tx, __u32 snd_una)
{
	for (int i = 0; i < TL_OPT_SLOTS; i++) {
		__u32 tail = tx->tail;
		if (tail == tx->head)
			return;
		struct tl_opt_start *s = &tx->starts[tail & (TL_OPT_SLOTS - 1)];
		if (!seq__before(s->seq, snd_una))
			return;
		if (!s->written) {
			tcpopt__count(TL_OPT_UNWRITTEN);
			if (s->shared)
				tcpopt__count(TL_OPT_SHARED_SEGMENT);
		}
		tx->tail = tail + 1;
	}
}

/* Might the segment being built carry a start? New data starts at snd_nxt; a retransmission
 * lies in [snd_una, snd_nxt) and happens in loss recovery (lost or retransmitted segments
 * counted), where any unacknowledged start may be in it. */
static __always_inline bool tcpopt__segment_may_carry(struct bpf_sock_ops *skops,
						      const struct tl_opt_tx *tx, __u32 payload)
{
	__u32 snd_nxt = skops->snd_nxt;
	bool recovering = skops->lost_out || skops->retrans_out;
	for (int i = 0; i < TL_OPT_SLOTS; i++) {
		__u32 idx = tx->tail + i;
		if (idx == tx->head)
			break;
		const struct tl_opt_start *s = &tx->starts[idx & (TL_OPT_SLOTS - 1)];
		if (seq__within(s->seq, snd_nxt, payload))
			return true;
		if (recovering && seq__before(s->seq, snd_nxt))
			return true;
	}
	return false;
}

static __always_inline void tcpopt__reserve(struct bpf_sock_ops *skops)
{
	__u64 key = sk__key(skops);
	struct tl_opt_tx *tx = bpf_map_lookup_elem(&opt_tx, &key);
	if (!tx)
		return;
	tx->reserved = 0;
	if (skops->skb_tcp_flags & (TL_TCP_SYN | TL_TCP_RST))
		return;
	tcpopt__retire(tx, skops->snd_una);
	if (tx->tail == tx->head)
		return; /* nothing to carry: no space taken */
	if (skops->args[0] == BPF_WRITE_HDR_TCP_CURRENT_MSS) {
		/* The MSS for the segments built next: room for the option while a start waits. */
		tx->mss_room = bpf_reserve_hdr_opt(skops, TL_OPT_SPACE, 0) == 0;
		return;
	}
	__u32 payload = skops->skb_len; /* the header is not pushed yet */
	if (!payload || !tcpopt__segment_may_carry(skops, tx, payload))
		return;
	if (!tx->mss_room || bpf_reserve_hdr_opt(skops, TL_OPT_SPACE, 0)) {
		tcpopt__count(TL_OPT_NO_ROOM);
		return;
	}
	tx->reserved = 1;
}

static __always_inline void tcpopt__write(struct bpf_sock_ops *skops)
{
	__u64 key = sk__key(skops);
	struct tl_opt_tx *tx = bpf_map_lookup_elem(&opt_tx, &key);
	if (!tx || !tx->reserved)
		return;
	tx->reserved = 0;
	void *data = (void *)(long)skops->skb_data;
	void *data_end = (void *)(long)skops->skb_data_end;
	struct tl_tcphdr_min *th = data;
	if ((void *)(th + 1) > data_end)
		return;
	__u32 seq = bpf_ntohl(th->seq);
	__u32 hdr_len = (th->doff_res >> 4) * 4;
	if (skops->skb_len <= hdr_len)
		return;
	__u32 payload = skops->skb_len - hdr_len;

	struct tl_opt_start *chosen = NULL;
	for (int i = 0; i < TL_OPT_SLOTS; i++) {
		__u32 idx = tx->tail + i;
		if (idx == tx->head)
			break;
		struct tl_opt_start *s = &tx->starts[idx & (TL_OPT_SLOTS - 1)];
		if (!seq__within(s->seq, seq, payload))
			continue;
		if (!chosen)
			chosen = s; /* the earliest start in the segment: starts are in send order */
		else if (!s->written)
			s->shared = 1;
	}
	if (!chosen)
		return; /* a retransmission without a start: the reserved space stays NOPs */
	struct tl_tcp_option opt = {.kind = TL_OPT_KIND};
	__builtin_memcpy(opt.trace_id, chosen->trace_id, 16);
	__builtin_memcpy(opt.span_id, chosen->span_id, 8);
	opt.trace_flags = chosen->trace_flags;
	opt.len = chosen->trace_flags == 1 ? TL_OPT_LEN_SAMPLED : TL_OPT_LEN_FLAGS;
	long err = bpf_store_hdr_opt(skops, &opt, opt.len, 0);
	if (err == 0) {
		tcpopt__count(chosen->written ? TL_OPT_REWRITTEN : TL_OPT_WRITTEN);
		chosen->written = 1;
		chosen->shared = 0;
	} else if (err == -TL_EEXIST) {
		tcpopt__count(TL_OPT_OTHER_WRITER);
	} else {
		tcpopt__count(TL_OPT_NO_ROOM);
	}
}

/* An arriving segment (or, at PASSIVE_ESTABLISHED, the one completing the handshake, which can
 * carry data). Keeps what it carried, with the range of bytes it came with. */
static __always_inline void tcpopt__parse(struct bpf_sock_ops *skops)
{
	struct tl_tcp_option opt = {.kind = TL_OPT_KIND};
	long n = bpf_load_hdr_opt(skops, &opt, sizeof(opt), 0);
	if (n < 0)
		return; /* -ENOMSG: none of ours */
	if (opt.len != TL_OPT_LEN_SAMPLED && opt.len != TL_OPT_LEN_FLAGS) {
		tcpopt__count(TL_OPT_MALFORMED);
		return;
	}
	if (opt.len == TL_OPT_LEN_SAMPLED)
		opt.trace_flags = 1;
	void *data = (void *)(long)skops->skb_data;
	void *data_end = (void *)(long)skops->skb_data_end;
	struct tl_tcphdr_min *th = data;
	if ((void *)(th + 1) > data_end)
		return;
	__u32 hdr_len = (th->doff_res >> 4) * 4;
	if (skops->skb_len <= hdr_len)
		return; /* no payload: nothing to tie the context to */
	__u32 seq = bpf_ntohl(th->seq);
	__u32 end = seq + (skops->skb_len - hdr_len);
	__u64 key = sk__key(skops);
	if (!key)
		return;
	struct tl_opt_rx *rx = bpf_map_lookup_elem(&opt_rx, &key);
	if (!rx) {
		struct tl_opt_rx fresh = {};
		bpf_map_update_elem(&opt_rx, &key, &fresh, BPF_NOEXIST);
		rx = bpf_map_lookup_elem(&opt_rx, &key);
		if (!rx)
			return;
	}
	tcpopt__count(TL_OPT_PARSED);
	__u32 head = rx->head;
	if (head != rx->tail) {
		/* More segments with the same option (GSO copies it onto each): one range. */
		struct tl_opt_seen *last = &rx->seen[(head - 1) & (TL_OPT_SLOTS - 1)];
		if (ids__equal(last->span_id, opt.span_id, 1) &&
		    ids__equal(last->trace_id, opt.trace_id, 2)) {
			if (seq__before(last->end, end))
				last->end = end;
			if (seq__before(seq, last->seq) && !last->done && !last->tls_pending)
				last->seq = seq;
			return;
		}
	}
	if (head - rx->tail >= TL_OPT_SLOTS) {
		/* A socket this agent follows: the oldest unread would be lost, so the newest is (and
		 * counted). One it does not follow (another agent's process, or none's, on this node):
		 * keep the newest in a bounded ring, nothing is lost that anyone here would read. A
		 * socket not yet accepted is not followed yet: its first options never fill the ring. */
		if (bpf_map_lookup_elem(&sock_conns, &key)) {
			tcpopt__count(TL_OPT_RX_FULL);
			return;
		}
		rx->tail = rx->tail + 1;
	}
	struct tl_opt_seen *s = &rx->seen[head & (TL_OPT_SLOTS - 1)];
	s->seq = seq;
	s->end = end;
	__builtin_memcpy(s->trace_id, opt.trace_id, 16);
	__builtin_memcpy(s->span_id, opt.span_id, 8);
	s->trace_flags = opt.trace_flags;
	s->done = 0;
	s->tls_pending = 0;
	s->plain_pos = 0;
	barrier(); /* the slot is complete before a reader can see it (x86: stores stay in order) */
	rx->head = head + 1;
}

SEC("sockops")
int tl_tcp_option(struct bpf_sock_ops *skops)
{
	if (!tcpopt_on)
		return 1;
	if (skops->family != 2 /* AF_INET */ && skops->family != 10 /* AF_INET6 */)
		return 1;
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		tcpopt__arm(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		/* Any process's: which one accepts it is not known in softirq. The callback runs only
		 * for segments with an option the kernel does not know, so this costs nothing else. */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						 BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG);
		tcpopt__parse(skops);
		break;
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
		tcpopt__parse(skops);
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		tcpopt__reserve(skops);
		break;
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		tcpopt__write(skops);
		break;
	}
	return 1;
}
