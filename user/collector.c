/* The collector's event loop and snapshots. */
#include <errno.h>
#include <stddef.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cmd.h"
#include "collector.h"
#include "events.h"
#include "tlsprobe.h"

#define TICK_NS      100000000ULL   /* fold closed connections this often */
#define LISTENERS_NS 10000000000ULL /* re-read the listening sockets this often */

/* The service owning an event's task: its cgroup, or in the root cgroup
 * (or a cgroup already gone) its process name. */
static struct service *owner_service(struct collector *c, uint64_t cgroup_id, const char *task_comm)
{
	char comm[SEAMS_COMM_LEN + 1], name[256];
	const char *path;

	memcpy(comm, task_comm, SEAMS_COMM_LEN);
	comm[SEAMS_COMM_LEN] = '\0';
	utf8_clean(comm);
	path = cgnames_path(&c->names, cgroup_id);
	cg_service_name(path, comm, name, sizeof(name));
	return conntrack_service(&c->ct, name, path ? path : "/", comm);
}

static void on_tls_note(void *ctx, const void *data, size_t size)
{
	struct collector *c = ctx;
	const struct tls_note *e = data;

	if (size >= sizeof(*e) && !c->detached)
		loader_tls_note(c->loader, (pid_t)e->tgid, e->type);
}

static void on_event(void *ctx, const void *data, size_t size)
{
	struct collector *c = ctx;
	const struct conn_event *e = data;
	const struct event_hdr *h = data;

	if (size < sizeof(*h))
		return;
	c->events++;
	if (h->type == EV_PG_DATA) {
		if (size >= sizeof(struct pg_data_event))
			c->pg_copied += ((const struct pg_data_event *)data)->len;
		pgtrack_record(&c->pg, data, size);
		return;
	}
	if (h->type == EV_NEST) {
		struct nest_event n = { 0 };

		/* Only the slots used were sent. */
		memcpy(&n, data, size < sizeof(n) ? size : sizeof(n));
		if (size >= offsetof(struct nest_event, calls) && n.ncalls <= SEAMS_NEST_CALLS &&
		    size >= offsetof(struct nest_event, calls) + n.ncalls * sizeof(struct nest_call))
			conntrack_nest(&c->ct, &n);
		else
			c->ct.nestbad.invalid++;
		return;
	}
	if (h->type == EV_PG_OPEN) {
		const struct pg_open_event *o = data;

		if (size >= sizeof(*o))
			pgtrack_open(&c->pg, o, owner_service(c, o->cgroup_id, o->comm));
		return;
	}
	if (size < sizeof(*e))
		return;
	if (c->trace) {
		char l[64], r[64];

		addr_format(e->laddr, e->lport, l, sizeof(l));
		addr_format(e->raddr, e->rport, r, sizeof(r));
		fprintf(stderr, "event %u sock %llx tgid %u cgroup %llu %s -> %s\n", e->type,
			(unsigned long long)e->sock, e->tgid, (unsigned long long)e->cgroup_id, l, r);
	}
	if (e->type == EV_CLOSE)
		pgtrack_close(&c->pg, e->sock);
	conntrack_event(&c->ct, e, e->type == EV_CLOSE ? NULL : owner_service(c, e->cgroup_id, e->comm));
}

int collector_opt(struct collector_opts *o, int opt, const char *arg, const char *cmd, char **argv)
{
	char *end;
	unsigned long port;

	switch (opt) {
	case 'c':
		if (o->ncgroups == SEAMS_MAX_CGROUPS) {
			die_msg("too many --cgroup options (at most %d)", SEAMS_MAX_CGROUPS);
			return 2;
		}
		o->cgroups[o->ncgroups++] = arg;
		return 0;
	case 'p':
		port = strtoul(arg, &end, 10);
		if (*end || !port || port > 65535) {
			die_msg("--pg-port '%s' is not a TCP port number (1-65535)", arg);
			return 2;
		}
		if (o->npg_ports == SEAMS_MAX_PG_PORTS - 1) {
			die_msg("too many --pg-port options (at most %d)", SEAMS_MAX_PG_PORTS - 1);
			return 2;
		}
		o->pg_ports[o->npg_ports++] = (uint16_t)port;
		return 0;
	case 'T':
		if (!strcmp(arg, "process"))
			o->tls_probe = TLS_PROBE_PROCESS;
		else if (!strcmp(arg, "file"))
			o->tls_probe = TLS_PROBE_FILE;
		else if (!strcmp(arg, "off"))
			o->tls_probe = TLS_PROBE_OFF;
		else {
			die_msg("--tls-probe '%s' is not one of process, file or off", arg);
			return 2;
		}
		return 0;
	case 'v':
		o->verbose = true;
		return 0;
	}
	return bad_option(cmd, argv);
}

int collector_start(struct collector *c, const struct collector_opts *o)
{
	struct loader_opts lo = { .verbose = o->verbose, .pg_ports = o->pg_ports, .npg_ports = o->npg_ports,
				  .tls_probe = o->tls_probe };
	uint64_t cgroups[SEAMS_MAX_CGROUPS];
	static char paths[SEAMS_MAX_CGROUPS][4096];
	const char *cgpaths[SEAMS_MAX_CGROUPS];
	struct pg_ring *rings;
	char err[512];
	int ncpu;

	memset(c, 0, sizeof(*c));
	c->names.mount_fd = -1;
	c->trace = getenv("SEAMS_TRACE") != NULL;
	conntrack_init(&c->ct);
	if (pgtrack_init(&c->pg, &c->ct)) {
		die_msg("out of memory");
		return -1;
	}
	if (loader_check_host(err, sizeof(err))) {
		die_msg("%s", err);
		return -1;
	}
	if (cgnames_init(&c->names)) {
		die_msg("no cgroup2 mount found in /proc/self/mountinfo; mount one with "
			"'mount -t cgroup2 none /sys/fs/cgroup/unified'");
		return -1;
	}
	for (size_t i = 0; i < o->ncgroups && i < SEAMS_MAX_CGROUPS; i++) {
		cgroups[i] = cgnames_lookup(&c->names, o->cgroups[i], paths[i], sizeof(paths[i]));
		cgpaths[i] = paths[i];
		if (!cgroups[i]) {
			die_msg("cgroup '%s' does not exist under %s; give a path such as "
				"/system.slice/orders.service", o->cgroups[i], c->names.mount);
			return -1;
		}
	}
	lo.cgroups = cgroups;
	lo.cgroup_paths = cgpaths;
	lo.ncgroups = o->ncgroups;
	c->cgroups = o->cgroups;
	c->ncgroups = o->ncgroups;
	conntrack_load_listeners(&c->ct);
	c->start_mono = now_ns(CLOCK_MONOTONIC);
	c->start_real = c->window_start_real = now_ns(CLOCK_REALTIME);
	c->mono_to_real = (int64_t)c->start_real - (int64_t)c->start_mono;
	c->last_tick = c->last_listeners = c->start_mono;
	c->loader = loader_start(&lo, err, sizeof(err));
	if (!c->loader) {
		die_msg("%s", err);
		return -1;
	}
	/* The collector is batch work.  Its wakeups must not preempt the
	 * services it watches: a service preempted while it holds a lock
	 * stalls every client waiting on that lock. */
	if (sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){ 0 }))
		fprintf(stderr, "seams: cannot run as SCHED_BATCH (%s); going on\n", strerror(errno));
	rings = loader_pg_rings(c->loader, &ncpu);
	c->ev = events_new(loader_events_fd(c->loader), rings, ncpu, on_event, c);
	if (!c->ev) {
		die_msg("cannot open the event ring buffer: %s", strerror(errno));
		return -1;
	}
	events_set_urgent(c->ev, on_tls_note);
	return 0;
}

static void housekeeping(struct collector *c, bool final)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC);

	if (final || now - c->last_listeners >= LISTENERS_NS) {
		conntrack_load_listeners(&c->ct);
		c->last_listeners = now;
	}
	if (final || now - c->last_tick >= TICK_NS) {
		conntrack_tick(&c->ct, final ? UINT64_MAX / 2 : now);
		c->last_tick = now;
	}
}

int collector_poll(struct collector *c, int timeout_ms)
{
	int err = events_poll(c->ev, timeout_ms, false);

	if (err < 0)
		c->drain_errors++;
	housekeeping(c, false);
	if (!c->detached) {
		loader_follow_cgroups(c->loader, &c->names, c->cgroups, c->ncgroups);
		loader_tls_scan(c->loader);
	}
	return err;
}

void collector_detach(struct collector *c)
{
	if (c->detached || !c->loader)
		return;
	/* Detach first, then drain what is still in the rings: nothing is
	 * produced after the last read, and the counters are final. */
	loader_tls_stats(c->loader, &c->tls_final);
	loader_detach(c->loader);
	if (events_poll(c->ev, 0, true) < 0)
		c->drain_errors++;
	c->detached = true;
	collector_counters(c);
}

void collector_counters(struct collector *c)
{
	if (!c->loader)
		return;
	loader_counters(c->loader, c->cnt);
	/* A malformed record in a CPU's ring is a PostgreSQL event lost too. */
	c->cnt[CNT_PG_EVENTS_LOST] += events_corrupt(c->ev);
}

static void fill_capture(struct collector *c, struct graph *g, int which)
{
	json_t *cap = graph_capture(g), *dropped = json_object();
	uint64_t start = which == STAT_WINDOW ? c->window_start_real : c->start_real;
	uint64_t end = now_ns(CLOCK_REALTIME);
	const uint64_t *cnt = c->cnt;
	char host[256] = "unknown", t[40];
	struct tlsprobe_stats tls;
	struct utsname u;

	if (c->detached)
		tls = c->tls_final;
	else
		loader_tls_stats(c->loader, &tls);
	gethostname(host, sizeof(host) - 1);
	json_object_set_new(cap, "host", json_string(host));
	if (!uname(&u))
		json_object_set_new(cap, "kernel", json_string(u.release));
	graph_format_time(start, t, sizeof(t));
	json_object_set_new(cap, "start", json_string(t));
	graph_format_time(end, t, sizeof(t));
	json_object_set_new(cap, "end", json_string(t));
	json_object_set_new(cap, "duration_s", json_real((double)(end - start) / 1e9));
	json_object_set_new(cap, "events", json_integer((json_int_t)c->events));
	json_object_set_new(cap, "lost_events", json_integer((json_int_t)(cnt[CNT_LOST_EVENTS] + cnt[CNT_PG_EVENTS_LOST])));
	json_object_set_new(cap, "untracked_connections", json_integer((json_int_t)(cnt[CNT_SOCK_FULL] + cnt[CNT_PG_FULL])));
	json_object_set_new(cap, "client_gone_connections", json_integer((json_int_t)conntrack_client_gone(&c->ct)));
	json_object_set_new(cap, "pg_connections", json_integer((json_int_t)c->pg.connections));
	json_object_set_new(cap, "pg_statements", json_integer((json_int_t)c->pg.statements));
	json_object_set_new(cap, "pg_unknown_statements", json_integer((json_int_t)c->pg.unknown_statements));
	json_object_set_new(cap, "pg_encrypted_connections", json_integer((json_int_t)c->pg.encrypted_connections));
	json_object_set_new(cap, "pg_tls_connections", json_integer((json_int_t)c->pg.tls_connections));
	json_object_set_new(cap, "tls_probed_processes", json_integer((json_int_t)tls.procs));
	json_object_set_new(cap, "tls_probed_files", json_integer((json_int_t)tls.files));
	json_object_set_new(cap, "tls_unprobed_processes", json_integer((json_int_t)tls.unprobed));
	json_object_set_new(cap, "tls_released_processes", json_integer((json_int_t)tls.released));
	json_object_set_new(cap, "tls_untraced_connections", json_integer((json_int_t)cnt[CNT_TLS_FULL]));
	json_object_set_new(cap, "sockets_without_slot", json_integer((json_int_t)cnt[CNT_NO_SLOT]));
	json_object_set_new(cap, "pg_bytes_copied", json_integer((json_int_t)c->pg_copied));
	json_object_set_new(cap, "pg_bytes_skipped", json_integer((json_int_t)cnt[CNT_PG_SKIPPED]));
	json_object_set_new(cap, "pg_lost_bytes", json_integer((json_int_t)cnt[CNT_PG_LOST]));
	json_object_set_new(cap, "pg_events_lost", json_integer((json_int_t)cnt[CNT_PG_EVENTS_LOST]));
	json_object_set_new(cap, "pg_undecodable_bytes", json_integer((json_int_t)pgtrack_undecodable(&c->pg)));
	json_object_set_new(cap, "nesting", json_pack("{s:I, s:I, s:I, s:I, s:I}",
		"threads_full", (json_int_t)cnt[CNT_NEST_FULL],
		"unresolved", (json_int_t)c->ct.nestbad.unresolved,
		"invalid", (json_int_t)c->ct.nestbad.invalid,
		"calls_unresolved", (json_int_t)c->ct.nestbad.calls_unresolved,
		"calls_overflow", (json_int_t)c->ct.nestbad.calls_overflow));
	for (int i = 0; i < DROP_NR; i++)
		if (c->ct.dropped[i])
			json_object_set_new(dropped, ct_drop_names[i], json_integer((json_int_t)c->ct.dropped[i]));
	if (json_object_size(dropped))
		json_object_set(cap, "dropped", dropped);
	json_decref(dropped);
	if (c->drain_errors)
		json_object_set_new(cap, "drain_errors", json_integer((json_int_t)c->drain_errors));
}

struct graph *collector_graph(struct collector *c, int which)
{
	struct graph *g = graph_new();
	const char *host;

	if (!g)
		return NULL;
	conntrack_to_graph(&c->ct, g, which, c->mono_to_real);
	pgtrack_to_graph(&c->pg, g, which, c->mono_to_real);
	fill_capture(c, g, which);
	/* Every service seen here ran on this host: merge uses it across hosts. */
	host = json_string_value(json_object_get(graph_capture(g), "host"));
	for (size_t i = 0; i < graph_node_count(g); i++) {
		json_t *n = graph_node_at(g, i);

		if (!strcmp(json_string_value(json_object_get(n, "kind")), "service"))
			graph_node_add_string(n, "hosts", host);
	}
	return g;
}

void collector_window_reset(struct collector *c)
{
	conntrack_window_reset(&c->ct);
	pgtrack_window_reset(&c->pg);
	c->window_start_real = now_ns(CLOCK_REALTIME);
}

void collector_evict(struct collector *c, uint64_t idle_ns)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	uint64_t cutoff = now > idle_ns ? now - idle_ns : 0;

	conntrack_evict(&c->ct, cutoff);
	pgtrack_evict(&c->pg, cutoff);
	conntrack_sweep_services(&c->ct, cutoff);
	cgnames_evict(&c->names);
}

void collector_free(struct collector *c)
{
	events_free(c->ev);
	loader_stop(c->loader);
	pgtrack_free(&c->pg);
	conntrack_free(&c->ct);
	cgnames_free(&c->names);
	memset(c, 0, sizeof(*c));
}

void collector_report_losses(const struct collector *c)
{
	uint64_t lost = c->cnt[CNT_LOST_EVENTS] + c->cnt[CNT_PG_EVENTS_LOST];

	if (lost)
		die_msg("%llu events were lost (ring buffer full); the graph undercounts",
			(unsigned long long)lost);
	if (c->cnt[CNT_PG_LOST])
		die_msg("%llu PostgreSQL bytes could not be followed; statements in them are missing",
			(unsigned long long)c->cnt[CNT_PG_LOST]);
	if (c->drain_errors)
		die_msg("%llu reads of the event rings failed; events in them may be missing",
			(unsigned long long)c->drain_errors);
}
