/* The collector: what `capture` and `agent` share.  It loads and attaches
 * the programs, reads their events in time order into connection and
 * PostgreSQL tracking, and builds graphs from what it holds without
 * changing it. */
#ifndef SEAMS_COLLECTOR_H
#define SEAMS_COLLECTOR_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "cgname.h"
#include "clock.h"
#include "conntrack.h"
#include "graph.h"
#include "loader.h"
#include "pgtrack.h"
#include "tlsprobe.h"

struct collector_opts {
	const char *cgroups[SEAMS_MAX_CGROUPS]; /* --cgroup paths; none = the whole host */
	size_t ncgroups;
	uint16_t pg_ports[SEAMS_MAX_PG_PORTS - 1];
	size_t npg_ports;
	bool verbose;
	int tls_probe;  /* TLS_PROBE_* */
};

enum { TLS_PROBE_PROCESS /* the default */, TLS_PROBE_FILE, TLS_PROBE_OFF };

/* The long options every collector command takes, for getopt_long. */
#define COLLECTOR_LONGOPTS \
	{ "cgroup", required_argument, NULL, 'c' }, \
	{ "pg-port", required_argument, NULL, 'p' }, \
	{ "tls-probe", required_argument, NULL, 'T' }, \
	{ "verbose", no_argument, NULL, 'v' }

/* The options capture and agent share: --cgroup (c), --pg-port (p),
 * --tls-probe (T) and --verbose (v), for subcommand cmd's getopt loop,
 * which passes it every option it does not take itself.  0: taken; 2, the
 * exit status for bad usage, with one line said: a bad value, or an option
 * unknown or missing its value.  o must outlive the collector started with it. */
int collector_opt(struct collector_opts *o, int opt, const char *arg, const char *cmd, char **argv);

struct collector {
	struct cgnames names;
	struct conntrack ct;
	struct pgtrack pg;
	struct loader *loader;
	struct events *ev;
	uint64_t events;
	uint64_t drain_errors;   /* failed reads of the rings, counted, never fatal */
	uint64_t start_real, start_mono, window_start_real;
	uint64_t last_tick, last_listeners;
	int64_t mono_to_real;
	uint64_t cnt[CNT_MAX];   /* the kernel's counters, as of the last read */
	uint64_t pg_copied;      /* PostgreSQL bytes in the records read (not a
				  * kernel counter: one cache line less per call) */
	const char *const *cgroups; /* --cgroup paths, followed as units restart */
	size_t ncgroups;
	bool trace;              /* SEAMS_TRACE=1: every event on stderr */
	bool detached;
	struct tlsprobe_stats tls_final; /* as it was when detached */
};

/* Check the host, resolve cgroups, load and attach.  On failure prints one
 * line (die_msg) and returns -1; collector_free() is still needed. */
int collector_start(struct collector *c, const struct collector_opts *o);
/* Wait up to timeout_ms, hand over what arrived, fold what closed.  0, or
 * a negative errno (counted in drain_errors too). */
int collector_poll(struct collector *c, int timeout_ms);
/* Detach, then hand over everything still in the rings. */
void collector_detach(struct collector *c);
/* Re-read the kernel's counters into c->cnt. */
void collector_counters(struct collector *c);
/* A graph of `which` (STAT_TOTAL since start, STAT_WINDOW since the last
 * window reset), with its capture section.  Reads, never changes, what the
 * collector holds. */
struct graph *collector_graph(struct collector *c, int which);
void collector_window_reset(struct collector *c);
/* Forget what has been idle longer than idle_ns. */
void collector_evict(struct collector *c, uint64_t idle_ns);
/* One line on stderr per kind of loss, if any. */
void collector_report_losses(const struct collector *c);
void collector_free(struct collector *c);

#endif
