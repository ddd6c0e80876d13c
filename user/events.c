#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/libbpf.h>

#include "clock.h"
#include "events.h"

/* Records may reach a ring a little after their timestamp (the time is
 * taken, then the record written); those younger than this wait a round. */
#define GRACE_NS 20000000ULL

/* Ring buffer events, copied out: the ring buffer is read whole, and what
 * is too young stays here. */
struct queued {
	uint64_t ts;
	size_t off;
	size_t size;
};

struct events {
	struct ring_buffer *rb;
	struct pg_ring *rings;
	int ncpu;
	event_fn fn;
	event_fn urgent;
	void *ctx;
	struct queued *q;
	size_t nq, capq, first;  /* q[first..nq) wait */
	uint8_t *buf;
	size_t len, cap;
	uint64_t *pos;           /* per CPU: next record to hand over */
	uint64_t corrupt;
};

static int enqueue(void *ctx, void *data, size_t size)
{
	struct events *ev = ctx;
	uint64_t ts;

	if (size < sizeof(struct event_hdr) || ((struct event_hdr *)data)->type == EV_WAKE)
		return 0;
	/* What TLS probing acts on is acted on at once, not in time order:
	 * an exec'd process is about to load its libraries, a client that
	 * got TLS is about to use it. */
	switch (((struct event_hdr *)data)->type) {
	case EV_EXEC: case EV_PG_TLS: case EV_PG_PLAIN:
		if (ev->urgent)
			ev->urgent(ev->ctx, data, size);
		return 0;
	}
	memcpy(&ts, data, sizeof(ts));
	if (ev->nq == ev->capq) {
		size_t cap = ev->capq ? 2 * ev->capq : 256;
		struct queued *q = realloc(ev->q, cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		ev->q = q;
		ev->capq = cap;
	}
	if (ev->len + size > ev->cap) {
		size_t cap = ev->cap ? 2 * ev->cap : 65536;
		uint8_t *b;

		while (cap < ev->len + size)
			cap *= 2;
		b = realloc(ev->buf, cap);
		if (!b)
			return -ENOMEM;
		ev->buf = b;
		ev->cap = cap;
	}
	memcpy(ev->buf + ev->len, data, size);
	ev->q[ev->nq++] = (struct queued){ .ts = ts, .off = ev->len, .size = size };
	ev->len += size;
	return 0;
}

struct events *events_new(int rb_fd, struct pg_ring *rings, int ncpu, event_fn fn, void *ctx)
{
	struct events *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return NULL;
	ev->rings = rings;
	ev->ncpu = ncpu;
	ev->fn = fn;
	ev->ctx = ctx;
	ev->pos = calloc(ncpu, sizeof(*ev->pos));
	ev->rb = ring_buffer__new(rb_fd, enqueue, ev, NULL);
	if (!ev->pos || !ev->rb) {
		events_free(ev);
		return NULL;
	}
	for (int c = 0; c < ncpu; c++)
		ev->pos[c] = rings[c].tail;
	return ev;
}

/* The record of CPU c at pos (its length word, then its bytes). */
static const uint8_t *ring_rec(const struct pg_ring *r, uint64_t pos, uint32_t *len)
{
	const uint8_t *p = r->data + (pos & (PG_RING_SIZE - 1));

	memcpy(len, p, sizeof(*len));
	return p + 8;
}

/* The timestamp of CPU c's next record before head, or UINT64_MAX when
 * there is none; a malformed record drops the rest of that ring. */
static uint64_t peek(struct events *ev, int c, uint64_t head)
{
	uint32_t len;
	const uint8_t *p;
	uint64_t ts;

	if (ev->pos[c] >= head)
		return UINT64_MAX;
	p = ring_rec(&ev->rings[c], ev->pos[c], &len);
	if (len < sizeof(struct pg_data_event) || len > PG_REC_MAX - 8 || head - ev->pos[c] < len + 8) {
		ev->corrupt++;
		ev->pos[c] = head;
		return UINT64_MAX;
	}
	memcpy(&ts, p, sizeof(ts));
	return ts;
}

int events_poll(struct events *ev, int timeout_ms, bool final)
{
	uint64_t cutoff, heads[ev->ncpu], next[ev->ncpu];
	int err;

	cutoff = final ? UINT64_MAX : now_ns(CLOCK_MONOTONIC) - GRACE_NS;
	err = ring_buffer__poll(ev->rb, timeout_ms);
	if (err >= 0)
		err = ring_buffer__consume(ev->rb);
	if (err < 0 && err != -EINTR)
		return err;
	for (int c = 0; c < ev->ncpu; c++) {
		heads[c] = __atomic_load_n(&ev->rings[c].head, __ATOMIC_ACQUIRE);
		next[c] = peek(ev, c, heads[c]);
	}

	/* Hand over the oldest head of all sources until all are too young. */
	for (;;) {
		int best = -2;   /* -1: the queue; else a CPU; -2: nothing left */
		uint64_t best_ts = UINT64_MAX;

		if (ev->first < ev->nq) {
			best_ts = ev->q[ev->first].ts;
			best = -1;
		}
		for (int c = 0; c < ev->ncpu; c++) {
			if (next[c] != UINT64_MAX && (best == -2 || next[c] < best_ts)) {
				best_ts = next[c];
				best = c;
			}
		}
		if (best == -2 || best_ts > cutoff)
			break;
		if (best < 0) {
			struct queued *e = &ev->q[ev->first++];

			ev->fn(ev->ctx, ev->buf + e->off, e->size);
		} else {
			uint32_t len;
			const uint8_t *p = ring_rec(&ev->rings[best], ev->pos[best], &len);

			ev->fn(ev->ctx, p, len);
			ev->pos[best] += (len + 8 + 7) & ~7ULL;
			next[best] = peek(ev, best, heads[best]);
		}
	}
	for (int c = 0; c < ev->ncpu; c++)
		__atomic_store_n(&ev->rings[c].tail, ev->pos[c], __ATOMIC_RELEASE);
	/* Keep only what waits, at the front. */
	if (ev->first == ev->nq) {
		ev->nq = ev->first = ev->len = 0;
	} else if (ev->first) {
		size_t base = ev->q[ev->first].off;

		memmove(ev->buf, ev->buf + base, ev->len - base);
		ev->len -= base;
		memmove(ev->q, ev->q + ev->first, (ev->nq - ev->first) * sizeof(*ev->q));
		ev->nq -= ev->first;
		ev->first = 0;
		for (size_t i = 0; i < ev->nq; i++)
			ev->q[i].off -= base;
	}
	return 0;
}

void events_set_urgent(struct events *ev, event_fn fn)
{
	ev->urgent = fn;
}

uint64_t events_corrupt(const struct events *ev)
{
	return ev->corrupt;
}

void events_free(struct events *ev)
{
	if (!ev)
		return;
	ring_buffer__free(ev->rb);
	free(ev->q);
	free(ev->buf);
	free(ev->pos);
	free(ev);
}
