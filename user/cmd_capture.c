/* seams capture: attach, collect until the duration ends or a signal
 * arrives, detach, then write the graph. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cgname.h"
#include "cmd.h"
#include "conntrack.h"
#include "events.h"
#include "graph.h"
#include "loader.h"
#include "pgtrack.h"

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	exiting = 1;
}

struct capture {
	struct cgnames names;
	struct conntrack ct;
	struct pgtrack pg;
	uint64_t events;
	bool trace; /* SEAMS_TRACE=1: every event on stderr, for debugging */
};

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* The service owning an event's task: its cgroup, or in the root cgroup
 * (or a cgroup already gone) its process name. */
static struct service *owner_service(struct capture *cap, uint64_t cgroup_id, const char *task_comm)
{
	char comm[SEAMS_COMM_LEN + 1], name[256];
	const char *path;

	memcpy(comm, task_comm, SEAMS_COMM_LEN);
	comm[SEAMS_COMM_LEN] = '\0';
	path = cgnames_path(&cap->names, cgroup_id);
	cg_service_name(path, comm, name, sizeof(name));
	return conntrack_service(&cap->ct, name, path ? path : "/", comm);
}

static void on_event(void *ctx, const void *data, size_t size)
{
	struct capture *cap = ctx;
	const struct conn_event *e = data;
	const struct event_hdr *h = data;

	if (size < sizeof(*h))
		return;
	cap->events++;
	if (h->type == EV_PG_DATA) {
		pgtrack_record(&cap->pg, data, size);
		return;
	}
	if (h->type == EV_PG_OPEN) {
		const struct pg_open_event *o = data;

		if (size >= sizeof(*o))
			pgtrack_open(&cap->pg, o, owner_service(cap, o->cgroup_id, o->comm));
		return;
	}
	if (size < sizeof(*e))
		return;
	if (cap->trace) {
		char l[64], r[64];

		addr_format(e->laddr, e->lport, l, sizeof(l));
		addr_format(e->raddr, e->rport, r, sizeof(r));
		fprintf(stderr, "event %u sock %llx tgid %u cgroup %llu %s -> %s\n", e->type,
			(unsigned long long)e->sock, e->tgid, (unsigned long long)e->cgroup_id, l, r);
	}
	if (e->type == EV_CLOSE)
		pgtrack_close(&cap->pg, e->sock);
	conntrack_event(&cap->ct, e, e->type == EV_CLOSE ? NULL : owner_service(cap, e->cgroup_id, e->comm));
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: seams capture [--duration SECONDS] [--output FILE|-] [--cgroup PATH]...\n"
		"                     [--pg-port PORT]... [-v]\n"
		"\n"
		"Trace TCP connections and PostgreSQL traffic of every cgroup (or only the\n"
		"--cgroup ones and their children) until the duration ends or Ctrl-C, then\n"
		"write the service graph.\n"
		"\n"
		"  -d, --duration SECONDS  stop after this long (default: until Ctrl-C)\n"
		"  -o, --output FILE       where to write the graph JSON, '-' for stdout\n"
		"                          (default: graph.json)\n"
		"  -c, --cgroup PATH       trace only this cgroup v2 subtree; repeatable\n"
		"  -p, --pg-port PORT      PostgreSQL also listens on PORT (5432 always does);\n"
		"                          repeatable.  Other ports are found by traffic shape\n"
		"  -v, --verbose           show libbpf's messages\n");
}

/* Fail before attaching, not after a long capture, when the output cannot
 * be written: create and remove a temporary file beside it. */
static int check_output(const char *path)
{
	char dir[4096], tmp[4200];
	int fd;

	if (!strcmp(path, "-"))
		return 0;
	snprintf(dir, sizeof(dir), "%s", path);
	snprintf(tmp, sizeof(tmp), "%s/.seams-check-XXXXXX", dirname(dir));
	fd = mkstemp(tmp);
	if (fd < 0) {
		die_msg("cannot write %s: %s; choose a writable --output path", path, strerror(errno));
		return -1;
	}
	close(fd);
	unlink(tmp);
	return 0;
}

static void status_line(struct capture *cap, const uint64_t *cnt)
{
	fprintf(stderr, "\r\033[K  %llu events  %zu connections open  %llu statements  "
		"%llu lost events  %llu PostgreSQL bytes lost",
		(unsigned long long)cap->events, conntrack_open_count(&cap->ct),
		(unsigned long long)cap->pg.statements,
		(unsigned long long)(cnt[CNT_LOST_EVENTS] + cnt[CNT_PG_EVENTS_LOST]),
		(unsigned long long)cnt[CNT_PG_LOST]);
}

static void fill_capture(struct graph *g, uint64_t start, uint64_t end, struct capture *cap,
			 const uint64_t *cnt)
{
	json_t *c = graph_capture(g);
	char host[256] = "unknown", t[40];
	struct utsname u;

	gethostname(host, sizeof(host) - 1);
	json_object_set_new(c, "host", json_string(host));
	if (!uname(&u))
		json_object_set_new(c, "kernel", json_string(u.release));
	graph_format_time(start, t, sizeof(t));
	json_object_set_new(c, "start", json_string(t));
	graph_format_time(end, t, sizeof(t));
	json_object_set_new(c, "end", json_string(t));
	json_object_set_new(c, "duration_s", json_real((double)(end - start) / 1e9));
	json_object_set_new(c, "events", json_integer(cap->events));
	json_object_set_new(c, "lost_events", json_integer(cnt[CNT_LOST_EVENTS] + cnt[CNT_PG_EVENTS_LOST]));
	json_object_set_new(c, "untracked_connections", json_integer(cnt[CNT_SOCK_FULL] + cnt[CNT_PG_FULL]));
	json_object_set_new(c, "client_gone_connections", json_integer(cap->ct.client_gone));
	json_object_set_new(c, "pg_connections", json_integer(cap->pg.connections));
	json_object_set_new(c, "pg_statements", json_integer(cap->pg.statements));
	json_object_set_new(c, "pg_unknown_statements", json_integer(cap->pg.unknown_statements));
	json_object_set_new(c, "pg_encrypted_connections", json_integer(cap->pg.encrypted_connections));
	json_object_set_new(c, "pg_bytes_copied", json_integer(cnt[CNT_PG_COPIED]));
	json_object_set_new(c, "pg_bytes_skipped", json_integer(cnt[CNT_PG_SKIPPED]));
	json_object_set_new(c, "pg_lost_bytes", json_integer(cnt[CNT_PG_LOST]));
	json_object_set_new(c, "pg_events_lost", json_integer(cnt[CNT_PG_EVENTS_LOST]));
	json_object_set_new(c, "pg_undecodable_bytes", json_integer(pgtrack_undecodable(&cap->pg)));
}

/* Every service seen here ran on this host: merge uses it across hosts. */
static void name_host(struct graph *g)
{
	const char *host = json_string_value(json_object_get(graph_capture(g), "host"));

	for (size_t i = 0; i < graph_node_count(g); i++) {
		json_t *n = graph_node_at(g, i);

		if (!strcmp(json_string_value(json_object_get(n, "kind")), "service"))
			graph_node_add_string(n, "hosts", host);
	}
}

static int write_graph(struct graph *g, const char *path)
{
	char err[512], fallback[64];

	if (!graph_write(g, path, err, sizeof(err)))
		return 0;
	/* Never lose a capture to a bad output path: keep it somewhere. */
	snprintf(fallback, sizeof(fallback), "/tmp/seams-graph-%d.json", getpid());
	if (!graph_write(g, fallback, NULL, 0))
		die_msg("%s; the graph was saved to %s instead", err, fallback);
	else
		die_msg("%s", err);
	return -1;
}

int cmd_capture(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "output", required_argument, NULL, 'o' },
		{ "cgroup", required_argument, NULL, 'c' },
		{ "pg-port", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct capture cap = { 0 };
	struct loader_opts lo = { 0 };
	uint64_t cgroups[SEAMS_MAX_CGROUPS], cnt[CNT_MAX] = { 0 };
	const char *output = "graph.json";
	const char *cgroup_args[SEAMS_MAX_CGROUPS];
	uint16_t pg_ports[SEAMS_MAX_PG_PORTS - 1];
	size_t ncgroup_args = 0;
	double duration = 0;
	struct loader *l = NULL;
	struct events *ev = NULL;
	struct pg_ring *rings;
	int ncpu;
	struct graph *g = NULL;
	uint64_t start_mono, start, end, last_status = 0;
	int64_t mono_to_real;
	bool tty = isatty(STDERR_FILENO);
	char err[512], *endp;
	int opt, ret = 1;

	cap.names.mount_fd = -1;
	cap.trace = getenv("SEAMS_TRACE") != NULL;
	optind = 0; /* reinitialize: tests run several commands in one process */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "d:o:c:p:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			duration = strtod(optarg, &endp);
			if (*endp || !(duration > 0)) {
				die_msg("--duration '%s' is not a positive number of seconds", optarg);
				return 2;
			}
			break;
		case 'o':
			output = optarg;
			break;
		case 'c':
			if (ncgroup_args == SEAMS_MAX_CGROUPS) {
				die_msg("too many --cgroup options (at most %d)", SEAMS_MAX_CGROUPS);
				return 2;
			}
			cgroup_args[ncgroup_args++] = optarg;
			break;
		case 'p': {
			unsigned long port = strtoul(optarg, &endp, 10);

			if (*endp || !port || port > 65535) {
				die_msg("--pg-port '%s' is not a TCP port number (1-65535)", optarg);
				return 2;
			}
			if (lo.npg_ports == SEAMS_MAX_PG_PORTS - 1) {
				die_msg("too many --pg-port options (at most %d)", SEAMS_MAX_PG_PORTS - 1);
				return 2;
			}
			pg_ports[lo.npg_ports++] = (uint16_t)port;
			lo.pg_ports = pg_ports;
			break;
		}
		case 'v':
			lo.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return bad_option("capture", argv);
		}
	}
	if (optind < argc) {
		die_msg("unexpected argument '%s'; see 'seams capture --help'", argv[optind]);
		return 2;
	}
	if (loader_check_host(err, sizeof(err))) {
		die_msg("%s", err);
		return 1;
	}
	if (cgnames_init(&cap.names)) {
		die_msg("no cgroup2 mount found in /proc/self/mountinfo; mount one with "
			"'mount -t cgroup2 none /sys/fs/cgroup/unified'");
		goto out;
	}
	for (size_t i = 0; i < ncgroup_args; i++) {
		char path[4096];

		cgroups[i] = cgnames_lookup(&cap.names, cgroup_args[i], path, sizeof(path));
		if (!cgroups[i]) {
			die_msg("cgroup '%s' does not exist under %s; give a path such as "
				"/system.slice/orders.service", cgroup_args[i], cap.names.mount);
			goto out;
		}
	}
	lo.cgroups = cgroups;
	lo.ncgroups = ncgroup_args;
	if (check_output(output))
		goto out;
	conntrack_init(&cap.ct);
	if (pgtrack_init(&cap.pg, &cap.ct)) {
		die_msg("out of memory");
		goto out;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	start_mono = now_ns(CLOCK_MONOTONIC);
	start = now_ns(CLOCK_REALTIME);
	mono_to_real = (int64_t)start - (int64_t)start_mono;
	l = loader_start(&lo, err, sizeof(err));
	if (!l) {
		die_msg("%s", err);
		goto out;
	}
	/* The collector is batch work.  Its wakeups must not preempt the
	 * services it watches: a service preempted while it holds a lock
	 * stalls every client waiting on that lock. */
	if (sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){ 0 }))
		fprintf(stderr, "seams: cannot run as SCHED_BATCH (%s); going on\n", strerror(errno));
	rings = loader_pg_rings(l, &ncpu);
	ev = events_new(loader_events_fd(l), rings, ncpu, on_event, &cap);
	if (!ev) {
		die_msg("cannot open the event ring buffer: %s", strerror(errno));
		goto out;
	}
	if (duration > 0)
		fprintf(stderr, "seams: attached; capturing for %g s (Ctrl-C stops early)\n", duration);
	else
		fprintf(stderr, "seams: attached; capturing until Ctrl-C\n");

	while (!exiting) {
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		int err_poll;

		if (duration > 0 && now - start_mono >= (uint64_t)(duration * 1e9))
			break;
		/* Events are mostly submitted without a wakeup: drain on the timer. */
		err_poll = events_poll(ev, 100, false);
		if (err_poll < 0) {
			die_msg("reading events failed: %s", strerror(-err_poll));
			break;
		}
		if (tty && now - last_status >= 500000000ULL) {
			loader_counters(l, cnt);
			status_line(&cap, cnt);
			last_status = now;
		}
	}
	/* Detach first, then drain what is still in the ring: nothing is
	 * produced after the last read, and the counters are final. */
	loader_detach(l);
	events_poll(ev, 0, true);
	loader_counters(l, cnt);
	/* A malformed record in a CPU's ring is a PostgreSQL event lost too. */
	cnt[CNT_PG_EVENTS_LOST] += events_corrupt(ev);
	end = now_ns(CLOCK_REALTIME);
	if (tty)
		fprintf(stderr, "\r\033[K");
	events_free(ev);
	ev = NULL;
	loader_stop(l);
	l = NULL;

	conntrack_load_listeners(&cap.ct);
	g = graph_new();
	conntrack_to_graph(&cap.ct, g, mono_to_real);
	pgtrack_to_graph(&cap.pg, g, &cap.ct, mono_to_real);
	fill_capture(g, start, end, &cap, cnt);
	name_host(g);
	ret = write_graph(g, output) ? 1 : 0;
	fprintf(stderr, "seams: captured %.1f s: %llu events, %llu lost; %zu nodes, %zu edges%s%s\n",
		(double)(end - start) / 1e9, (unsigned long long)cap.events,
		(unsigned long long)cnt[CNT_LOST_EVENTS], graph_node_count(g), graph_edge_count(g),
		ret ? "" : " -> ", ret ? "" : (strcmp(output, "-") ? output : "stdout"));
	if (cnt[CNT_LOST_EVENTS] + cnt[CNT_PG_EVENTS_LOST])
		die_msg("%llu events were lost (ring buffer full); the graph undercounts",
			(unsigned long long)(cnt[CNT_LOST_EVENTS] + cnt[CNT_PG_EVENTS_LOST]));
	if (cnt[CNT_PG_LOST])
		die_msg("%llu PostgreSQL bytes could not be followed; statements in them are missing",
			(unsigned long long)cnt[CNT_PG_LOST]);
out:
	events_free(ev);
	loader_stop(l);
	graph_free(g);
	pgtrack_free(&cap.pg);
	conntrack_free(&cap.ct);
	cgnames_free(&cap.names);
	return ret;
}
