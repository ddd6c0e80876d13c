/* PostgreSQL payload capture on the client side of a connection.  The kernel
 * follows the v3 message framing so that it copies headers and the start of
 * bodies only, and leaves out DataRow and CopyData messages whole: bytes
 * copied per query stay flat however large the result.  What it leaves out
 * is reported as gaps (struct pg_seg), which keeps the collector in step. */
#ifndef SEAMS_PGFRAME_BPF_H
#define SEAMS_PGFRAME_BPF_H

#include "seams.h"
#include "sock.bpf.h"

#define PG_COPY_STEP  4096   /* bytes copied per framer step */
#define PG_MAX_STEPS  8192   /* framer steps per syscall chunk */
#define PG_MAX_IOV    8      /* iovecs followed per readv/writev/sendmsg/recvmsg */
#define PG_FAST_MAX   512    /* a chunk up to this size is read once, then framed in place */
#define PG_MAX_MSG    (1u << 30)
#define PG_SSL_REQ    80877103
#define PG_GSS_REQ    80877104

struct pg_dirstate {
	__u64 pend_skipped; /* gaps not yet reported in an event */
	__u64 pend_lost;
	__u32 skip;         /* body bytes of the current message to leave out */
	__u32 copy;         /* body bytes of the current message to copy */
	__u8 hdr[8];        /* a header split across syscalls */
	__u8 hdr_have;
	__u8 synced;
	__u8 untyped;       /* frontend: next message has no type byte (startup) */
	__u8 bare;          /* backend: next is the one-byte answer to an SSL (1) or GSS (2) request */
	__u8 sync_next;     /* backend: a frontend write happened, resync at next read */
	__u8 encrypted;     /* frontend: the connection went TLS or GSS (held with the
			     * state a send reads: one cache line less per send) */
	__u8 pad[2];
};

struct pg_state {
	struct pg_dirstate d[2];
};

/* The record being built: its header and data, room for the segments to
 * be put after the data when it is sent, and slack so masked offsets stay
 * in bounds; the segments are kept apart while it is built. */
struct pg_scratch {
	struct pg_data_event ev;
	__u8 data[PG_DATA_MAX + PG_SEGS_MAX * sizeof(struct pg_seg)];
	__u8 slack[2 * PG_COPY_STEP];
	__u8 raw[3 * PG_FAST_MAX];  /* a small chunk, read whole; slack after it too */
	struct pg_seg segs[PG_SEGS_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pg_scratch);
} pgscratch SEC(".maps");

/* One ring per CPU for PostgreSQL records (include/seams.h); the loader
 * sizes it to the CPUs and the collector mmaps it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pg_ring);
} pgrings SEC(".maps");

/* Mask a length the compiler already knows is small, in a way it cannot
 * optimize out, so the verifier sees the bound too. */
static __always_inline __u32 bounded(__u32 v, __u32 mask)
{
	asm volatile("" : "+r"(v));
	return v & mask;
}

static __always_inline __u32 be32(const __u8 *b)
{
	return (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
}

/* What the framer does with each message type, per direction: legal types
 * (include/seams.h) carry MSG_LEGAL and the body bytes the decoder
 * needs, everything after them being a gap; MSG_DROP leaves out the whole
 * message, header too.  A table, not a switch: one load instead of a branch
 * per type, which keeps the verifier's paths few. */
#define MSG_LEGAL 0x8000
#define MSG_DROP  0x4000
#define MSG_CAP   0x3fff

/* Body bytes kept per type, beyond the header; any other legal type keeps
 * none.  Passwords and SASL ('p', 'R' past its subtype) are never copied;
 * Bind's portal and statement names lead and its values follow; an error's
 * severity and SQLSTATE come first. */
#define FRONTEND_KEEP(t) \
	((t) == 'Q' || (t) == 'P' ? PG_SQL_COPY : (t) == 'B' ? 256 : \
	 (t) == 'C' || (t) == 'D' || (t) == 'E' || (t) == 'F' ? 128 : (t) == 'd' ? MSG_DROP : 0)
#define BACKEND_KEEP(t) \
	((t) == 'C' ? 128 : (t) == 'E' || (t) == 'N' ? 512 : (t) == 'Z' ? 1 : (t) == 'R' ? 4 : \
	 (t) == 'S' ? 256 : (t) == 'D' || (t) == 'd' ? MSG_DROP : 0)
#define FRONTEND_PLAN(t) [t] = MSG_LEGAL | FRONTEND_KEEP(t),
#define BACKEND_PLAN(t)  [t] = MSG_LEGAL | BACKEND_KEEP(t),

static const __u16 msg_plan[2][128] = {
	[PG_DIR_FRONTEND] = { PG_FRONTEND_TYPES(FRONTEND_PLAN) },
	[PG_DIR_BACKEND] = { PG_BACKEND_TYPES(BACKEND_PLAN) },
};

static __always_inline __u32 plan_of(__u32 dir, __u8 t)
{
	if (t & 0x80)
		return 0;
	return msg_plan[bounded(dir, 1)][bounded(t, 127)];
}

struct frame_ctx {
	struct pg_scratch *scr;
	struct pg_dirstate *st;
	struct pg_state *ps;
	__u64 buf;     /* user address of the chunk */
	__u32 n;
	__u32 off;
	__u32 dir;
	__u32 run_off; /* fast path: bytes of raw to copy, not yet appended */
	__u32 run_len;
};

static __always_inline void ev_reset(struct pg_scratch *scr)
{
	scr->ev.len = 0;
	scr->ev.nsegs = 1;
	scr->segs[0].len = 0;
	scr->segs[0].skipped = 0;
	scr->segs[0].lost = 0;
}

static __always_inline struct pg_seg *cur_seg(struct pg_scratch *scr)
{
	/* nsegs is 1..PG_SEGS_MAX, a power of two: the mask only reassures the verifier. */
	return &scr->segs[(scr->ev.nsegs - 1) & (PG_SEGS_MAX - 1)];
}

/* The event builders below are global functions: the verifier checks each
 * once on its own, instead of once per path through the framer. */

/* Put the segments after the data; returns the size of the record. */
static __always_inline __u32 ev_seal(struct pg_scratch *scr)
{
	__u32 len = bounded(scr->ev.len, 2 * PG_DATA_MAX - 1), segbytes;

	if (len > PG_DATA_MAX)
		len = PG_DATA_MAX;
	segbytes = (bounded(scr->ev.nsegs - 1, PG_SEGS_MAX - 1) + 1) * sizeof(struct pg_seg);
	bpf_probe_read_kernel(scr->data + len, segbytes, scr->segs);
	return sizeof(scr->ev) + len + segbytes;
}

/* Room at the head of this CPU's ring for a record of len bytes (bounded
 * by the caller), which is written at *off + 8 and published with
 * pg_publish; NULL when the ring is full.  The ring is held until then. */
static __always_inline struct pg_ring *pg_reserve(__u32 len, __u32 *off)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct pg_ring *r = bpf_map_lookup_elem(&pgrings, &cpu);
	__u64 head, n;

	if (!r)
		return NULL;
	/* Only a program preempted halfway (a preemptible kernel) can find
	 * it busy; its record must not be overwritten. */
	if (__sync_lock_test_and_set(&r->busy, 1))
		return NULL;
	n = (len + 8 + 7) & ~7u;
	head = r->head;
	/* The collector's tail is on another CPU's cache line: read only
	 * when the last value read says the ring is half full. */
	if (head + n - r->tail_seen > PG_RING_SIZE / 2) {
		r->tail_seen = *(volatile __u64 *)&r->tail;
		if (head + n - r->tail_seen > PG_RING_SIZE / 2) {
			/* The collector drains on a timer; this one is filling fast. */
			struct event_hdr h = { .ts_ns = 0, .type = EV_WAKE };

			bpf_ringbuf_output(&events, &h, sizeof(h), BPF_RB_FORCE_WAKEUP);
		}
	}
	if (head + n - r->tail_seen > PG_RING_SIZE) {
		r->busy = 0;
		return NULL;
	}
	/* head is a multiple of 8; the mask says so to the verifier. */
	*off = head & (PG_RING_SIZE - 8);
	return r;
}

/* Publish the len bytes written after off (0: nothing) and let the ring go. */
static __always_inline void pg_publish(struct pg_ring *r, __u32 off, __u32 len)
{
	if (len) {
		*(__u32 *)&r->data[off & (PG_RING_SIZE - 8)] = len;
		/* Stores are seen in order on x86: the record, then head. */
		asm volatile("" ::: "memory");
		*(volatile __u64 *)&r->head = r->head + ((len + 8 + 7) & ~7u);
	}
	r->busy = 0;
}

/* Put len bytes at src in this CPU's ring; non-zero when it is full. */
static __always_inline int pg_emit(const void *src, __u32 len)
{
	struct pg_ring *r;
	__u32 off;

	len = bounded(len, PG_REC_MAX - 1);
	if (len > PG_REC_MAX - 8)
		return -1;
	r = pg_reserve(len, &off);
	if (!r)
		return -1;
	bpf_probe_read_kernel(&r->data[off + 8], len, src);
	pg_publish(r, off, len);
	return 0;
}

/* Send the record being built. */
__noinline int pg_flush(struct pg_scratch *scr, struct pg_state *ps)
{
	struct pg_data_event *ev;
	struct pg_dirstate *st;
	__u64 lost;

	if (!scr || !ps)
		return 0;
	ev = &scr->ev;
	st = &ps->d[ev->dir & 1];
	if (pg_emit(ev, ev_seal(scr))) {
		count(CNT_PG_EVENTS_LOST);
		/* The collector learns of it as lost bytes before the next event. */
		lost = ev->len;
		for (int i = 0; i < PG_SEGS_MAX; i++) {
			if (i >= ev->nsegs)
				break;
			lost += scr->segs[i].skipped + scr->segs[i].lost;
		}
		st->pend_lost += lost;
		count_n(CNT_PG_LOST, ev->len);
	}
	ev_reset(scr);
	return 0;
}

enum pg_src { SRC_USER, SRC_HDR, SRC_RAW };

/* Append n bytes as part of a run, from user memory at src, from the
 * header kept in st, or from offset src of scr->raw; n == 0 just makes sure
 * a run without gaps after it is open. */
__noinline int pg_append(struct pg_scratch *scr, struct pg_state *ps, __u64 src, __u32 n, int from)
{
	struct pg_data_event *ev;
	struct pg_dirstate *st;
	struct pg_seg *s;
	__u32 at;

	if (!scr || !ps)
		return 0;
	ev = &scr->ev;
	st = &ps->d[ev->dir & 1];
	if (ev->len + n > PG_DATA_MAX)
		pg_flush(scr, ps);
	s = cur_seg(scr);
	if (s->skipped || s->lost) {
		if (ev->nsegs >= PG_SEGS_MAX)
			pg_flush(scr, ps);
		else
			ev->nsegs++;
		s = cur_seg(scr);
		s->len = 0;
		s->skipped = 0;
		s->lost = 0;
	}
	if (!n || ev->len >= PG_DATA_MAX)
		return 0;
	at = bounded(ev->len, PG_DATA_MAX - 1);
	n = bounded(n, 2 * PG_COPY_STEP - 1);
	if (from == SRC_USER)
		bpf_probe_read_user(scr->data + at, n, (void *)src);
	else if (from == SRC_RAW)
		bpf_probe_read_kernel(scr->data + at, n & (2 * PG_FAST_MAX - 1),
				      scr->raw + (src & (PG_FAST_MAX - 1)));
	else
		bpf_probe_read_kernel(scr->data + at, n & 15, st->hdr);
	ev->len += n;
	s->len += n;
	return 0;
}

/* n bytes left out: skipped on purpose (lost == 0), or lost. */
__noinline int pg_gap(struct pg_scratch *scr, struct pg_state *ps, __u64 n, int lost)
{
	struct pg_seg *s;

	if (!scr || !ps || !n)
		return 0;
	s = cur_seg(scr);
	if (lost) {
		s->lost += n;
		count_n(CNT_PG_LOST, n);
		return 0;
	}
	if (s->lost) {
		/* A skip after a loss belongs to a new run. */
		pg_append(scr, ps, 0, 0, SRC_HDR);
		s = cur_seg(scr);
	}
	s->skipped += n;
	count_n(CNT_PG_SKIPPED, n);
	return 0;
}

static __always_inline void append_user(struct frame_ctx *c, __u32 n)
{
	pg_append(c->scr, c->ps, c->buf + c->off, n, SRC_USER);
}

static __always_inline void append_hdr(struct frame_ctx *c, __u32 n)
{
	pg_append(c->scr, c->ps, 0, n, SRC_HDR);
}

static __always_inline void add_skipped(struct frame_ctx *c, __u64 n)
{
	pg_gap(c->scr, c->ps, n, 0);
}

static __always_inline void add_lost(struct frame_ctx *c, __u64 n)
{
	pg_gap(c->scr, c->ps, n, 1);
}

/* n bytes the framer cannot follow: lost, and the direction out of step
 * until a boundary it can trust. */
static __always_inline void lose_sync(struct pg_scratch *scr, struct pg_state *ps,
				      struct pg_dirstate *st, __u64 n)
{
	st->synced = 0;
	st->skip = st->copy = 0;
	pg_gap(scr, ps, n, 1);
}

static __always_inline long desync(struct frame_ctx *c)
{
	lose_sync(c->scr, c->ps, c->st, c->n - c->off);
	c->off = c->n;
	return 1;
}

/* A message header is complete in st->hdr: decide what of the body to copy
 * and what to leave out.  Returns the header bytes to copy, 0 when the
 * whole message is left out, or -1 when the stream is out of step. */
static __always_inline long header_done(struct frame_ctx *c)
{
	struct pg_dirstate *st = c->st;
	__u32 mlen, body, cap, plan;
	__u8 t = st->hdr[0];
	long hl;

	if (st->untyped) {
		__u32 code = be32(st->hdr + 4);

		mlen = be32(st->hdr);
		if (mlen < 8 || mlen > 10000) {
			desync(c);
			return -1;
		}
		if (code == PG_SSL_REQ || code == PG_GSS_REQ)
			c->ps->d[PG_DIR_BACKEND].bare = code == PG_SSL_REQ ? 1 : 2;
		else
			st->untyped = 0;
		body = mlen - 8;
		cap = 2048;
		hl = 8;
	} else {
		mlen = be32(st->hdr + 1);
		plan = plan_of(c->dir, t);
		if (!(plan & MSG_LEGAL) || mlen < 4 || mlen > PG_MAX_MSG) {
			desync(c);
			return -1;
		}
		body = mlen - 4;
		if (plan & MSG_DROP) {
			st->copy = 0;
			st->skip = body;
			return 0;
		}
		cap = plan & MSG_CAP;
		hl = 5;
	}
	st->copy = body < cap ? body : cap;
	st->skip = body - st->copy;
	return hl;
}

/* One framer step: a run of body bytes to copy or leave out, or a message
 * header.  A header read whole from this chunk goes out with the start of
 * its body (or with the rest of a message left out) in the same step, so a
 * small message costs one read, not three. */
static long frame_step(__u32 i, void *arg)
{
	struct frame_ctx *c = arg;
	struct pg_dirstate *st = c->st;
	__u32 avail, k, need, fresh;
	long hl;

	if (c->off >= c->n)
		return 1;
	avail = c->n - c->off;
	if (st->copy) {
		k = st->copy < avail ? st->copy : avail;
		if (k > PG_COPY_STEP)
			k = PG_COPY_STEP;
		append_user(c, k);
		st->copy -= k;
		c->off += k;
		return 0;
	}
	if (st->skip) {
		k = st->skip < avail ? st->skip : avail;
		add_skipped(c, k);
		st->skip -= k;
		c->off += k;
		return 0;
	}
	if (st->bare) {
		__u8 b = 0;

		bpf_probe_read_user(&b, 1, (void *)(c->buf + c->off));
		st->hdr[0] = b;
		append_hdr(c, 1);
		/* The answer to the client's SSLRequest tells its TLS
		 * probes whether this process needs them (a GSSENCRequest
		 * refused is followed by an SSLRequest). */
		if (b == 'S' || b == 'N')
			tls_note(b == 'S' ? EV_PG_TLS : st->bare == 1 ? EV_PG_PLAIN : 0);
		st->bare = 0;
		c->off += 1;
		if (b == 'S' || b == 'G') {
			/* TLS or GSS from here on: nothing more is readable. */
			c->ps->d[PG_DIR_FRONTEND].encrypted = 1;
			add_skipped(c, c->n - c->off);
			c->off = c->n;
			return 1;
		}
		return 0;
	}
	need = st->untyped ? 8 : 5;
	if (st->hdr_have >= need)
		st->hdr_have = 0;
	fresh = !st->hdr_have;
	k = need - st->hdr_have;
	if (k > avail)
		k = avail;
	bpf_probe_read_user(st->hdr + bounded(st->hdr_have, 7), bounded(k - 1, 7) + 1, (void *)(c->buf + c->off));
	st->hdr_have += k;
	c->off += k;
	if (st->hdr_have < need)
		return 0;
	st->hdr_have = 0;
	hl = header_done(c);
	if (hl < 0)
		return 1;
	avail = c->n - c->off;
	if (!hl) {
		k = st->skip < avail ? st->skip : avail;
		add_skipped(c, need + k);
		st->skip -= k;
		c->off += k;
		return 0;
	}
	if (!fresh) {
		/* The header came in pieces: copy it from where it was put together. */
		append_hdr(c, hl);
		return 0;
	}
	k = st->copy < avail ? st->copy : avail;
	if (k > PG_COPY_STEP)
		k = PG_COPY_STEP;
	pg_append(c->scr, c->ps, c->buf + c->off - hl, hl + k, SRC_USER);
	st->copy -= k;
	c->off += k;
	return 0;
}

static __always_inline void run_flush(struct frame_ctx *c)
{
	if (c->run_len)
		pg_append(c->scr, c->ps, c->run_off, c->run_len, SRC_RAW);
	c->run_len = 0;
}

/* The plan of the message at h, avail bytes of the chunk from h on; 0 when
 * no whole legal message starts there. */
static __always_inline __u32 whole_msg(__u32 dir, const __u8 *h, __u32 avail, __u32 *mlen)
{
	__u32 plan = plan_of(dir, h[0]);

	*mlen = be32(h + 1);
	if (avail < 5 || !(plan & MSG_LEGAL) || *mlen < 4 || *mlen >= avail)
		return 0;
	return plan;
}

/* One whole message of a small chunk already in scr->raw: the bytes to copy
 * join the run before them, so a reply such as CommandComplete plus
 * ReadyForQuery costs one copy.  Anything else (a message split across
 * syscalls, a bad header) stops here and the general framer goes on. */
static long fast_step(__u32 i, void *arg)
{
	struct frame_ctx *c = arg;
	struct pg_dirstate *st = c->st;
	__u32 avail, mlen, take;
	const __u8 *h;
	long hl;

	if (c->off >= c->n)
		return 1;
	avail = c->n - c->off;
	h = c->scr->raw + bounded(c->off, PG_FAST_MAX - 1);
	if (!whole_msg(c->dir, h, avail, &mlen))
		return 1;
	__builtin_memcpy(st->hdr, h, 5);
	hl = header_done(c);
	take = hl > 0 ? hl + st->copy : 0;
	if (take) {
		if (!c->run_len)
			c->run_off = c->off;
		c->run_len += take;
	}
	if (mlen + 1 > take) {
		run_flush(c);
		add_skipped(c, mlen + 1 - take);
	}
	st->copy = st->skip = 0;
	c->off += mlen + 1;
	return 0;
}

/* A chunk on its way straight into the ring, framed in place: it must be
 * whole messages.  What each one keeps (its header and the start of its
 * body, or nothing) is moved down over what the ones before it left out,
 * and what it leaves out becomes a gap.  The framing stops at the first
 * message that is not whole, so off reaches n only when every one is. */
#define WHOLE_SEGS 4   /* runs in one such record: a SELECT's reply needs 2 */

struct whole_ctx {
	__u8 *msgs;     /* the chunk as read, then the bytes it keeps */
	__u64 buf;      /* the chunk's user address */
	__u32 n;
	__u32 off;      /* next message, in the chunk */
	__u32 w;        /* end of the kept bytes */
	__u32 dir;
	__u32 nsegs;
	__u32 skipped;  /* bytes left out of this chunk */
	struct pg_seg segs[WHOLE_SEGS];
};

static long whole_step(__u32 i, void *arg)
{
	struct whole_ctx *c = arg;
	__u32 avail, mlen, plan, take = 0, body;
	struct pg_seg *s;
	const __u8 *h;

	if (c->off >= c->n)
		return 1;
	avail = c->n - c->off;
	h = c->msgs + bounded(c->off, PG_FAST_MAX - 1);
	plan = whole_msg(c->dir, h, avail, &mlen);
	if (!plan)
		return 1;
	if (!(plan & MSG_DROP)) {
		body = mlen - 4;
		take = 5 + (body < (plan & MSG_CAP) ? body : (plan & MSG_CAP));
	}
	s = &c->segs[bounded(c->nsegs - 1, WHOLE_SEGS - 1)];
	if (take) {
		if (s->skipped) {
			/* Bytes after a gap start a new run. */
			if (c->nsegs >= WHOLE_SEGS)
				return 1;
			c->nsegs++;
			s = &c->segs[bounded(c->nsegs - 1, WHOLE_SEGS - 1)];
		}
		/* Left of where it was read: a gap came before, and the user's
		 * buffer has it still, where the ring copy is overwritten. */
		if (c->w != c->off &&
		    bpf_probe_read_user(c->msgs + bounded(c->w, PG_FAST_MAX - 1),
					bounded(take - 1, PG_FAST_MAX - 1) + 1, (void *)(c->buf + c->off)))
			return 1;
		s->len += take;
		c->w += take;
	}
	if (mlen + 1 > take) {
		s->skipped += mlen + 1 - take;
		c->skipped += mlen + 1 - take;
	}
	c->off += mlen + 1;
	/* Stop after the last one rather than on a call that finds none: a
	 * call's return costs a mispredict on hosts with return-stack
	 * mitigations. */
	return c->off >= c->n;
}

/* The bytes a whole chunk keeps, into the ring by words: plain loads and
 * stores cost less than a helper call for the few hundred bytes at most
 * (on_send 461 -> 443 ns, on_recv 313 -> 297 ns per run on average).  Up
 * to 7 bytes past len are copied too; the segments go there next. */
static __always_inline void copy_kept(__u8 *dst, const __u8 *src, __u32 len)
{
	for (int i = 0; i < PG_FAST_MAX / 8; i++) {
		if (i * 8 >= len)
			break;
		*(__u64 *)(dst + i * 8) = *(const __u64 *)(src + i * 8);
	}
}

/* Most chunks are a few small messages: a Query, a CommandComplete with its
 * ReadyForQuery, a SELECT's whole reply.  Such a chunk is read once into
 * this CPU's scratch, framed there and copied into the ring as one record,
 * rather than built up run by run as the general framer does.  It is framed
 * in the scratch, not in the ring, because the ring's next bytes are seldom
 * in this CPU's cache (the collector read them last).  Returns false,
 * having sent nothing, for anything else. */
static __always_inline bool pg_whole(struct pg_scratch *scr, __u64 sock, struct pg_dirstate *st,
				     __u64 buf, __u32 n, __u32 dir)
{
	struct whole_ctx c = { .n = n, .dir = dir, .buf = buf, .nsegs = 1 };
	struct pg_data_event *e;
	struct pg_ring *r;
	__u32 off, size, segbytes;
	__u8 *tail;

	if (!n || n > PG_FAST_MAX || !st->synced || st->copy || st->skip || st->hdr_have ||
	    st->untyped || st->bare || st->pend_lost)
		return false;
	/* Gaps carried from earlier chunks come before this one's bytes. */
	c.segs[0].skipped = st->pend_skipped;
	c.msgs = scr->raw;
	if (bpf_probe_read_user(scr->raw, bounded(n - 1, PG_FAST_MAX - 1) + 1, (void *)buf))
		return false;
	bpf_loop(PG_FAST_MAX / 5 + 1, whole_step, &c, 0);
	if (c.off != n)
		return false;
	/* A counter's line is one more cache miss per call: touched only when
	 * there is something to add, and the bytes copied are counted by the
	 * collector, from the records. */
	if (c.skipped)
		count_n(CNT_PG_SKIPPED, c.skipped);
	if (!c.w) {
		/* Only gaps: carried to the next record rather than sent alone. */
		st->pend_skipped += c.skipped;
		return true;
	}
	segbytes = (bounded(c.nsegs - 1, WHOLE_SEGS - 1) + 1) * sizeof(struct pg_seg);
	size = sizeof(*e) + c.w + segbytes;
	r = pg_reserve(size, &off);
	if (!r)
		return false; /* the ring is full: the general path counts the loss */
	st->pend_skipped = 0;
	e = (void *)&r->data[off + 8];
	e->ts_ns = scr->ev.ts_ns;
	e->sock = sock;
	e->type = EV_PG_DATA;
	e->len = c.w;
	e->nsegs = c.nsegs;
	e->dir = dir;
	copy_kept((__u8 *)(e + 1), scr->raw, c.w);
	tail = (__u8 *)(e + 1) + bounded(c.w, PG_FAST_MAX - 1);
	for (int i = 0; i < WHOLE_SEGS; i++) {
		if (i >= c.nsegs)
			break;
		__builtin_memcpy(tail + i * sizeof(struct pg_seg), &c.segs[i], sizeof(struct pg_seg));
	}
	pg_publish(r, off, size);
	return true;
}

/* Does a write start with a startup-phase message (no type byte)? */
static __always_inline bool looks_untyped(const __u8 *b)
{
	__u32 len = be32(b), code = be32(b + 4);

	return len >= 8 && len <= 10000 &&
	       ((code >> 16) == 3 || code == PG_SSL_REQ || code == PG_GSS_REQ || code == 80877102);
}

/* Frame one contiguous chunk of a syscall's data: n bytes at user address
 * buf, moving in direction dir.  A global function, so the verifier checks
 * it once on its own rather than again for each program, caller and iovec. */
__noinline int frame_chunk(struct pg_scratch *scr, struct pg_state *ps, __u64 buf, __u32 n, __u32 dir)
{
	struct frame_ctx ctx = {}, *c = &ctx;
	struct pg_dirstate *st;

	if (!scr || !ps)
		return 0;
	st = &ps->d[dir & 1];
	c->scr = scr;
	c->ps = ps;
	c->st = st;
	c->dir = dir;
	c->buf = buf;
	c->n = n;

	if (!st->synced) {
		/* Writes start at a message boundary; so does the backend's first
		 * reply after a write.  The framer's checks catch a wrong guess. */
		if (c->dir == PG_DIR_FRONTEND) {
			__u8 b[8] = { 0 };

			bpf_probe_read_user(b, sizeof(b), (void *)c->buf);
			st->untyped = c->n >= 8 && looks_untyped(b);
			if (!c->ps->d[PG_DIR_BACKEND].synced)
				c->ps->d[PG_DIR_BACKEND].sync_next = 1;
		} else if (!st->sync_next) {
			add_lost(c, c->n);
			return 0;
		}
		st->synced = 1;
		st->sync_next = 0;
		st->hdr_have = 0;
		st->skip = st->copy = 0;
	}
	/* Most chunks are small and hold whole messages: one read, then the
	 * headers are parsed in place, instead of a read per header and per
	 * body. */
	if (n && n <= PG_FAST_MAX && !st->copy && !st->skip && !st->hdr_have && !st->untyped &&
	    !st->bare && !bpf_probe_read_user(scr->raw, bounded(n - 1, PG_FAST_MAX - 1) + 1, (void *)buf)) {
		c->run_len = 0;
		bpf_loop(PG_FAST_MAX / 5 + 1, fast_step, c, 0);
		run_flush(c);
	}
	bpf_loop(PG_MAX_STEPS, frame_step, c, 0);
	if (c->off < c->n)
		desync(c);
	return 0;
}

#endif
