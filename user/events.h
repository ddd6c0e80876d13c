/* What the kernel sends, read in time order: connection events from the
 * shared ring buffer and PostgreSQL records from the per-CPU rings.  One
 * connection's records can come from several CPUs as its process moves,
 * and its close from the ring buffer, so the sources are merged by their
 * timestamps, each source's own order kept. */
#ifndef SEAMS_EVENTS_H
#define SEAMS_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>

#include "seams.h"

typedef void (*event_fn)(void *ctx, const void *data, size_t size);

struct events;

/* rb_fd: the ring buffer; rings: ncpu mmapped per-CPU rings.  NULL on
 * failure, with errno set. */
struct events *events_new(int rb_fd, struct pg_ring *rings, int ncpu, event_fn fn, void *ctx);
/* Wait up to timeout_ms for data, then hand fn everything recorded before
 * a short grace period (a record may land a little after its timestamp),
 * oldest first; final: everything, once nothing more can come.  0, or a
 * negative errno. */
int events_poll(struct events *ev, int timeout_ms, bool final);
/* fn gets struct tls_note events (EV_EXEC, EV_PG_TLS, EV_PG_PLAIN) as soon
 * as they are read, ahead of the rest. */
void events_set_urgent(struct events *ev, event_fn fn);
/* Records found malformed in the per-CPU rings (never expected). */
uint64_t events_corrupt(const struct events *ev);
void events_free(struct events *ev);

#endif
