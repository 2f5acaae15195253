/* SPDX-License-Identifier: GPL-2.0-only */
/* Trace context shared by the capture object (which assigns server span ids when a request is
 * read, bpf/capture/trace_ctx.bpf.h) and the injection object (which writes traceparent into
 * outgoing requests, bpf/inject.bpf.c): the per-thread map that carries injected ids from one to
 * the other (the requests in flight are in bpf/capture/ctx.bpf.h), and the byte-level helpers
 * both need (HTTP/1.x request start, header scan, W3C traceparent parse/format).
 *
 * The map is defined in both objects; the capture object creates it and the injection object
 * reuses it by fd (agent/kernel/injector.cpp), so there is one instance. */
#pragma once

/* Ids the sk_msg program injected, by pid_tgid, until the sending syscall's exit reports them.
 * An entry whose syscall never reaches a traced exit (the agent's own canary, a failed send)
 * is ignored there (enter_ts_ns differs) and ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tl_inject_out);
} inject_out SEC(".maps");

/* Bytes scanned for the end of a request's header block (and for traceparent in it). A header
 * block longer than this is left alone (not injected; an incoming traceparent past it is not
 * seen by the kernel). Power of two: it is also the index mask. */
#define TL_SCAN_BYTES 4096

#define TL_W2(a, b) ((__u64)(__u8)(a) | ((__u64)(__u8)(b) << 8))
#define TL_W3(a, b, c) (TL_W2(a, b) | ((__u64)(__u8)(c) << 16))
#define TL_W4(a, b, c, d) (TL_W3(a, b, c) | ((__u64)(__u8)(d) << 24))

/* Do these 8 bytes (little-endian load of the first 8 bytes) start an HTTP/1.x request with one
 * of the common methods followed by a space? Cheap enough for every read; the full request
 * line is checked only when this passes. */
static __always_inline bool http__method_prefix(__u64 w)
{
	__u64 lo = w & 0xffffffffull, hi = w >> 32;
	if (lo == TL_W4('G', 'E', 'T', ' ') || lo == TL_W4('P', 'U', 'T', ' '))
		return true;
	if ((lo == TL_W4('P', 'O', 'S', 'T') || lo == TL_W4('H', 'E', 'A', 'D')) && (hi & 0xff) == ' ')
		return true;
	if (lo == TL_W4('P', 'A', 'T', 'C') && (hi & 0xffff) == TL_W2('H', ' '))
		return true;
	if (lo == TL_W4('D', 'E', 'L', 'E') && (hi & 0xffffff) == TL_W3('T', 'E', ' '))
		return true;
	return lo == TL_W4('O', 'P', 'T', 'I') && hi == TL_W4('O', 'N', 'S', ' ');
}

/* Header-block scan over a map-value buffer of at least TL_SCAN_BYTES + 64 bytes, one byte per
 * bpf_loop step (the verifier checks the callback once, whatever the length). */
struct tl_scan {
	const __u8 *buf;
	__u32 n;          /* valid bytes in buf (<= TL_SCAN_BYTES) */
	__u32 line_end;   /* offset just past the first "\r\n"; 0: none */
	__u32 block_end;  /* offset just past "\r\n\r\n"; 0: not within n */
	__u32 tp_value;   /* offset of the value of the first traceparent field; 0: none */
	__u32 tp_count;   /* traceparent fields seen */
	__u32 bad;        /* a NUL or a bare LF in the header block: not a request we touch */
};

static __always_inline __u8 scan__at(const struct tl_scan *s, __u32 i)
{
	return s->buf[i & (TL_SCAN_BYTES - 1)];
}

static __always_inline __u8 scan__lower(__u8 c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static long scan__step(__u32 i, void *ctx)
{
	struct tl_scan *s = ctx;
	if (i >= s->n)
		return 1;
	__u8 c = scan__at(s, i);
	if (c == 0) {
		s->bad = 1;
		return 1;
	}
	if (c != '\n')
		return 0;
	if (i == 0 || scan__at(s, i - 1) != '\r') {
		s->bad = 1;
		return 1;
	}
	if (!s->line_end) {
		s->line_end = i + 1;
	} else if (i >= 3 && scan__at(s, i - 2) == '\n' && scan__at(s, i - 3) == '\r') {
		s->block_end = i + 1;
		return 1;
	}
	/* A field line starts at i + 1: "traceparent:" in any case. */
	if (i + 13 > s->n)
		return 0;
	/* The name as two little-endian words (no string constant: static data in .rodata
	 * trips older BTF loaders). */
	const __u64 lo = TL_W4('t', 'r', 'a', 'c') | (TL_W4('e', 'p', 'a', 'r') << 32);
	const __u64 hi = TL_W4('e', 'n', 't', ':');
	for (int k = 0; k < 12; k++) {
		__u8 want = k < 8 ? (lo >> (8 * k)) & 0xff : (hi >> (8 * (k - 8))) & 0xff;
		if (scan__lower(scan__at(s, i + 1 + k)) != want)
			return 0;
	}
	if (!s->tp_count)
		s->tp_value = i + 13;
	s->tp_count++;
	return 0;
}

/* Scans buf[0, n) (n <= TL_SCAN_BYTES). */
static __always_inline void scan__headers(struct tl_scan *s, const __u8 *buf, __u32 n)
{
	__builtin_memset(s, 0, sizeof(*s));
	s->buf = buf;
	s->n = n > TL_SCAN_BYTES ? TL_SCAN_BYTES : n;
	bpf_loop(TL_SCAN_BYTES, scan__step, s, 0);
}

static __always_inline int hex__value(__u8 c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* W3C: lowercase only */
}

/* The n-byte id spelled by the 2n hex digits at p. False when a digit is not lowercase hex or
 * every byte is zero (W3C: an all-zero id is invalid). */
static __always_inline bool hex__id(const struct tl_scan *s, __u32 p, __u8 *out, const int n)
{
	__u8 any = 0;
	for (int k = 0; k < n; k++) {
		int hi = hex__value(scan__at(s, p + 2 * k));
		int lo = hex__value(scan__at(s, p + 1 + 2 * k));
		if (hi < 0 || lo < 0)
			return false;
		out[k] = (__u8)(hi << 4 | lo);
		any |= out[k];
	}
	return any != 0;
}

/* Parses "00-<32 hex>-<16 hex>-<2 hex>" after optional spaces at s->tp_value. W3C rules as the
 * agent applies them (agent/spans/trace_context.cpp): version not ff, ids not all zero; a
 * malformed value counts as absent. Returns true and fills the ids when valid. */
static __always_inline bool traceparent__parse(const struct tl_scan *s, __u8 trace_id[16],
					       __u8 parent_id[8], __u8 *flags)
{
	__u32 p = s->tp_value;
	for (int k = 0; k < 8; k++) {
		__u8 c = scan__at(s, p);
		if (c != ' ' && c != '\t')
			break;
		p++;
	}
	if (p + 55 > s->n)
		return false;
	int v0 = hex__value(scan__at(s, p)), v1 = hex__value(scan__at(s, p + 1));
	if (v0 < 0 || v1 < 0 || (v0 == 15 && v1 == 15) || scan__at(s, p + 2) != '-' ||
	    scan__at(s, p + 35) != '-' || scan__at(s, p + 52) != '-')
		return false;
	if (!hex__id(s, p + 3, trace_id, 16) || !hex__id(s, p + 36, parent_id, 8))
		return false;
	int f0 = hex__value(scan__at(s, p + 53)), f1 = hex__value(scan__at(s, p + 54));
	if (f0 < 0 || f1 < 0)
		return false;
	*flags = (__u8)(f0 << 4 | f1);
	return true;
}

/* Head sampling of the traces the kernel starts (agent/spans/sampler.h has the rule and the
 * reasons): a new trace is sampled iff its trace id's 56 rightmost bits, read big-endian, are
 * >= sample_threshold. The agent computes the threshold from sampling.ratio and sets it in both
 * objects before load (agent/kernel/capture_program.cpp, injector.cpp), so the capture and
 * injection programs and userspace decide a trace id alike. 0 samples every trace, 2^56 none.
 * Traces continued from a parent (a traceparent read, the thread's server request) keep the
 * parent's flag. */
const volatile __u64 sample_threshold = 0;

/* W3C trace-flags for a new trace: 0x01 (sampled) or 0x00. */
static __always_inline __u8 sample__flags(const __u8 *trace_id)
{
	__u64 r = 0;
	for (int k = 9; k < 16; k++)
		r = (r << 8) | trace_id[k];
	return r >= sample_threshold ? 1 : 0;
}

/* Ids derived from what every agent on this node sees alike at that instant (the socket and a
 * TCP sequence number read from it at the hook: the request's first byte), keyed by a node salt
 * (the kernel's boot id, set by userspace before load). Two agents tracing the same process
 * (a restart overlapping the old agent) then choose the same ids for the same request, so
 * whichever one's context goes on the wire, each agent's spans link up; and no two requests
 * share ids (sequence numbers start at a random ISN, and one socket never reuses one while
 * they are in flight). */
const volatile __u64 id_salt_lo = 0;
const volatile __u64 id_salt_hi = 0;

static __always_inline __u64 ids__mix(__u64 x)
{
	/* splitmix64's finalizer: every input bit moves every output bit. */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* words: 2 (a span id) or 4 (a trace id). `what` tells the ids of one request apart (trace,
 * server span, client span). Never all zero. */
static __always_inline void ids__derive(__u8 *out, int words, __u64 sk, __u64 seq_key, __u32 what)
{
	__u64 a = ids__mix(sk ^ id_salt_lo);
	__u64 b = ids__mix(a ^ seq_key ^ ((__u64)what << 56) ^ id_salt_hi);
	__builtin_memcpy(out, &b, 8);
	__u64 any = b;
	if (words == 4) {
		__u64 c = ids__mix(b ^ 0x9e3779b97f4a7c15ULL ^ id_salt_lo);
		__builtin_memcpy(out + 8, &c, 8);
		any |= c;
	}
	if (!any)
		out[0] = 1;
}
#define TL_ID_TRACE 1
#define TL_ID_SERVER_SPAN 2
#define TL_ID_CLIENT_SPAN 3

/* Random non-zero ids. */
static __always_inline void ids__random(__u8 *out, int words)
{
	__u32 any = 0;
	for (int k = 0; k < 4; k++) {
		if (k >= words)
			break;
		__u32 r = bpf_get_prandom_u32();
		any |= r;
		__builtin_memcpy(out + 4 * k, &r, 4);
	}
	if (!any)
		out[0] = 1;
}
