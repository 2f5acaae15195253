/* SPDX-License-Identifier: GPL-2.0-only */
/* Shedding and resuming ESTABLISHED connections at a request boundary (ABI 8).
 *
 * shed.bpf.h decides for a connection when it is first seen; a keep-alive load (nginx under
 * long-lived client connections, gRPC channels, database pools) opens nothing new, so that
 * decision alone never sheds it. Here the same hashed threshold is applied again at each
 * request boundary of a connection of known role: a "turn", where data starts flowing in the
 * request direction (server: ingress; client: egress) after anything else (the response, or
 * nothing yet). The direction of the last data is tl_conn_state.ctx_dir, which the data path
 * already keeps for trace_ctx.bpf.h, so the hot path pays one byte compare per event while the
 * direction holds and a load or two when it flips.
 *
 * At a turn, before the new request's bytes are claimed (so the positions it reports end
 * exactly after the last response):
 *   - a captured connection whose hash is now below the threshold is ended for userspace:
 *     a CONN_CLOSE with TL_CLOSE_SHED (userspace finishes the exchanges it holds, all whole:
 *     the last response ended where the request begins) and it becomes TL_IGNORED_SHED;
 *   - a shed connection (shed here or when new) whose hash is no longer below it resumes: a
 *     new generation, stream positions back to 0, a CONN_OPEN with source TL_SRC_FIRST_IO,
 *     exactly as a connection the agent first meets mid-life, so each protocol's mid-stream
 *     handling applies: HTTP/1 and the others start at this request; HTTP/2 joins with an
 *     unknown HPACK past (fields that refer to it come out unknown, never wrong; the spans say
 *     so), the same as for a connection opened before the agent;
 *   - a shed connection that stays shed counts the request (tl_shed_counts.requests).
 * The threshold is the same hash as at first sight, so a connection and its peer on this node
 * still turn together (each at its own request boundary), and a rising fraction only adds
 * connections to the shed set.
 *
 * Connections of unknown role (opened before the agent, or fds we did not see made) have no
 * turn: without the role a direction change may be a response starting, and ending a
 * connection there would cut an exchange in two. They keep the first-sight decision.
 *
 * Not atomic against a second thread doing I/O on the same connection in the other direction
 * at that instant (full-duplex HTTP/2): the worst case is a duplicate lifecycle event or
 * positions that userspace sees as a gap, never bytes joined across the boundary. */
#pragma once

/* The slow part, at a direction change of a connection that is shed or could be. A global
 * function, verified once on its own (as shed__new_conn, for sendmmsg/recvmmsg's loop). */
__noinline int shed__turn(struct tl_conn_state *st, __s32 fd, __u32 dir)
{
	if (!st)
		return 0;
	const __u8 now = dir == TL_DIR_EGRESS ? TL_CTX_DIR_EGRESS : TL_CTX_DIR_INGRESS;
	const bool shed = st->ignored == TL_IGNORED_SHED;
	const __u8 prev = st->ctx_dir;
	if (shed)
		st->ctx_dir = now; /* no data event will: it is what tells the next turn */
	bool request;
	if (st->role == TL_ROLE_SERVER)
		request = dir == TL_DIR_INGRESS;
	else if (st->role == TL_ROLE_CLIENT)
		request = dir == TL_DIR_EGRESS;
	else
		return 0;
	if (!request || prev == now)
		return 0;
	const bool below = (__u64)st->shed_hash < tl_shed_below; /* hashed when enrolled */
	if (!shed && !below)
		return 0; /* captured and staying so: most boundaries while shedding is partial */
	__u32 zero = 0;
	struct tl_shed_counts *c = bpf_map_lookup_elem(&shed_counts, &zero);
	if (!c)
		return 0;
	struct tl_fd_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .fd = fd};
	const __u64 moved = st->bytes[0] + st->bytes[1];
	if (shed && below) {
		c->requests++;
		return 0;
	}
	if (!shed) {
		/* Captured until here: userspace gets the positions the last response ended at. */
		conn__emit(TL_EV_CONN_CLOSE, &key, st, 0, TL_CLOSE_SHED);
		st->ignored = TL_IGNORED_SHED;
		st->shed_from = moved;
		st->ctx_dir = now;
		conn__disown_sock(&key, st); /* its TCP state changes are for nobody now */
		/* No ctx__conn_gone: at a request boundary no server request is in flight (it ended
		 * at its response's first byte), and the socket behind the fd stays the same. */
		c->established++;
		c->requests++;
		return 1;
	}
	/* Resume: what it moved while shed is counted, and a new generation starts at 0. */
	__u64 *gen = bpf_map_lookup_elem(&gen_counter, &zero);
	if (!gen)
		return 0;
	c->bytes += moved - st->shed_from;
	c->resumed++;
	st->gen = __sync_fetch_and_add(gen, 1) + 1;
	st->bytes[0] = st->bytes[1] = 0;
	st->tls_bytes[0] = st->tls_bytes[1] = 0;
	st->shed_from = 0;
	st->ignored = 0;
	st->ctx_dir = 0; /* the request's first event is a flip for trace_ctx.bpf.h */
	struct tl_sock_owner owner = {.id = {.tgid = key.tgid, .fd = fd, .gen = st->gen}};
	bpf_map_update_elem(&sock_conns, &st->sk, &owner, BPF_ANY);
	conn__emit(TL_EV_CONN_OPEN, &key, st, TL_SRC_FIRST_IO, 0);
	return 2;
}

/* Called for every data syscall on a tracked connection, before its bytes are claimed. */
static __always_inline void shed__at_turn(struct tl_conn_state *st, __s32 fd, __u8 dir)
{
	/* The hot path: the data keeps its direction. */
	if (st->ctx_dir == (dir == TL_DIR_EGRESS ? TL_CTX_DIR_EGRESS : TL_CTX_DIR_INGRESS))
		return;
	/* Nothing to shed and nothing shed on it; or outside the --port selection. */
	if (st->ignored == TL_IGNORED_PORT || (!st->ignored && !tl_shed_below))
		return;
	shed__turn(st, fd, dir);
}
