/* seams agent: the collector running for weeks.  This thread reads events
 * and renders every page; the HTTP thread only hands out the last rendered
 * bytes, so a slow scrape never stalls the event loop and reading never
 * changes what is counted. */
#include <errno.h>
#include <linux/capability.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "collector.h"
#include "httpd.h"
#include "metrics.h"
#include "privs.h"
#include "report.h"

#define DEFAULT_LISTEN  "127.0.0.1:9977"
#define DEFAULT_DIR     "/var/lib/seams"
#define RENDER_NS       1000000000ULL  /* /metrics, /graph.json?since=start, /report */
#define EVICT_CHECK_NS  60000000000ULL /* at most; a quarter of --evict-after when shorter */

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	exiting = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: seams agent [--listen ADDR:PORT] [--snapshot-dir DIR] [--snapshot-every S]\n"
		"                   [--window S] [--evict-after S] [--cgroup PATH]... [--pg-port PORT]...\n"
		"                   [--tls-probe process|file|off] [-v]\n"
		"\n"
		"Trace this host until SIGTERM, serving what it sees over HTTP for Prometheus\n"
		"and Grafana, and writing the graph to DIR/graph.json now and then and at exit.\n"
		"\n"
		"  -l, --listen ADDR:PORT    where to serve HTTP (default " DEFAULT_LISTEN ",\n"
		"                            loopback only); [::1]:PORT for IPv6\n"
		"  -D, --snapshot-dir DIR    where graph.json is written (default " DEFAULT_DIR ")\n"
		"  -s, --snapshot-every S    write it this often (default 300)\n"
		"  -w, --window S            /graph.json shows the last window this long (default 60)\n"
		"  -e, --evict-after S       forget services, edges and statements idle this long\n"
		"                            (default 900); their series leave /metrics\n"
		"  -c, --cgroup PATH         trace only this cgroup v2 subtree; repeatable\n"
		"  -p, --pg-port PORT        PostgreSQL also listens on PORT; repeatable\n"
		"      --tls-probe MODE      OpenSSL probes for PostgreSQL over TLS: process\n"
		"                            (default), file or off; see seams capture\n"
		"  -v, --verbose             show libbpf's messages\n"
		"\n"
		"Endpoints:\n"
		"  /metrics                   Prometheus text format:\n"
		"      traces_service_graph_request_total{client,server,connection_type}\n"
		"      traces_service_graph_request_failed_total{...}\n"
		"      traces_service_graph_request_server_seconds{...} (histogram)\n"
		"      traces_service_graph_request_client_seconds{...} (histogram)\n"
		"        connection_type=\"\" for service to service over TCP (a request is a\n"
		"        connection), \"database\" for PostgreSQL, where server is\n"
		"        DATABASE.SCHEMA.TABLE and a request is a statement\n"
		"      db_client_operation_duration_seconds{db_system_name,db_namespace,\n"
		"        db_collection_name,db_operation_name,error_type,client} (histogram)\n"
		"      seams_build_info, seams_events_total, seams_events_lost_total,\n"
		"      seams_pg_bytes_lost_total, seams_untracked_connections_total,\n"
		"      seams_sockets_without_slot_total,\n"
		"      seams_series_dropped_total{reason}, seams_drain_errors_total,\n"
		"      seams_evicted_total, seams_open_connections, seams_pg_statements_total,\n"
		"      seams_pg_tls_connections_total, seams_pg_encrypted_connections_total,\n"
		"      seams_tls_probed_processes, seams_tls_released_processes_total,\n"
		"      seams_memory_bytes\n"
		"  /graph.json                the last complete window (before the first one\n"
		"                             ends: the window so far)\n"
		"  /graph.json?since=start    everything since the agent started\n"
		"  /report                    the coupling findings as JSON\n"
		"  /healthz                   200 \"ok\" while the event loop runs\n");
}

/* The snapshot directory must take a file now, not at the first snapshot
 * an hour later. */
static int check_dir(const char *dir)
{
	char tmp[4200];
	struct stat st;
	int fd;

	if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
		die_msg("--snapshot-dir %s is not a directory; create it or choose another", dir);
		return -1;
	}
	snprintf(tmp, sizeof(tmp), "%s/.seams-check-XXXXXX", dir);
	fd = mkstemp(tmp);
	if (fd < 0) {
		die_msg("cannot write in --snapshot-dir %s: %s; choose a writable directory", dir, strerror(errno));
		return -1;
	}
	close(fd);
	unlink(tmp);
	return 0;
}

static void publish_json(struct httpd *h, const char *path, char *text)
{
	if (text)
		httpd_publish(h, path, "application/json", text, strlen(text));
	free(text);
}

static void publish_graph(struct httpd *h, const char *path, struct graph *g)
{
	if (g)
		publish_json(h, path, graph_dumps(g));
}

/* Since start: the graph, its report and the metrics. */
static void render(struct collector *c, struct httpd *h, struct strbuf *page, bool window_done)
{
	struct graph *g;
	json_t *rep;

	collector_counters(c);
	if (!metrics_render(page, c))
		httpd_publish(h, "/metrics", PROM_CONTENT_TYPE, page->s, page->len);
	g = collector_graph(c, STAT_TOTAL);
	if (!g)
		return;
	publish_graph(h, "/graph.json?since=start", g);
	rep = report_build(g);
	if (rep)
		publish_json(h, "/report", json_dumps(rep, JSON_INDENT(2) | JSON_SORT_KEYS));
	json_decref(rep);
	graph_free(g);
	if (!window_done) {
		g = collector_graph(c, STAT_WINDOW);
		publish_graph(h, "/graph.json", g);
		graph_free(g);
	}
}

static int snapshot(struct collector *c, const char *dir)
{
	char path[4200], err[512];
	struct graph *g = collector_graph(c, STAT_TOTAL);
	int ret;

	if (!g) {
		die_msg("out of memory building the snapshot");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/graph.json", dir);
	ret = graph_write(g, path, err, sizeof(err));
	if (ret)
		die_msg("%s", err);
	graph_free(g);
	return ret;
}

int cmd_agent(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "snapshot-dir", required_argument, NULL, 'D' },
		{ "snapshot-every", required_argument, NULL, 's' },
		{ "window", required_argument, NULL, 'w' },
		{ "evict-after", required_argument, NULL, 'e' },
		COLLECTOR_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct collector col = { 0 };
	struct collector_opts co = { 0 };
	const char *listen = DEFAULT_LISTEN, *dir = DEFAULT_DIR;
	double snap_every = 300, window = 60, evict_after = 900;
	uint64_t last_render = 0, last_window, last_snap, last_evict, evict_check;
	struct strbuf page = { 0 };
	struct httpd *h = NULL;
	bool window_done = false;
	char err[512];
	int opt, ret = 1;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "l:D:s:w:e:c:p:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen = optarg;
			break;
		case 'D':
			dir = optarg;
			break;
		case 's':
			if (parse_seconds("--snapshot-every", optarg, &snap_every))
				return 2;
			break;
		case 'w':
			if (parse_seconds("--window", optarg, &window))
				return 2;
			break;
		case 'e':
			if (parse_seconds("--evict-after", optarg, &evict_after))
				return 2;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (collector_opt(&co, opt, optarg, "agent", argv))
				return 2;
		}
	}
	if (extra_args("agent", argc, argv))
		return 2;
	if (httpd_check_listen(listen, err, sizeof(err))) {
		die_msg("%s", err);
		return 2;
	}
	/* The default is the agent's own: make it, as systemd's StateDirectory would. */
	if (!strcmp(dir, DEFAULT_DIR) && mkdir(dir, 0750) && errno != EEXIST) {
		die_msg("cannot create %s: %s; choose a --snapshot-dir", dir, strerror(errno));
		return 2;
	}
	if (check_dir(dir))
		return 2;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	/* Bind before attaching: a port in use fails at once, with nothing
	 * loaded. */
	h = httpd_open(listen, err, sizeof(err));
	if (!h) {
		die_msg("%s", err);
		return 1;
	}
	if (collector_start(&col, &co))
		goto out;
	/* Capabilities belong to a thread: drop them before the HTTP thread
	 * starts, so that it never holds what it does not need either. */
	{
		/* Processes that start later, and TLS libraries found later,
		 * are probed as they come: a perf event on a uprobe then needs
		 * CAP_BPF and CAP_PERFMON. */
		int keep[privs_agent_nkeep + 2];
		size_t nkeep = privs_agent_nkeep;

		memcpy(keep, privs_agent_keep, sizeof(privs_agent_keep[0]) * nkeep);
		if (co.tls_probe != TLS_PROBE_OFF) {
			keep[nkeep++] = CAP_BPF;
			keep[nkeep++] = CAP_PERFMON;
		}
		if (privs_drop(keep, nkeep, err, sizeof(err)))
			fprintf(stderr, "seams: %s; going on\n", err);
	}
	if (httpd_serve(h, err, sizeof(err))) {
		die_msg("%s", err);
		goto out;
	}
	httpd_publish(h, "/healthz", "text/plain; charset=utf-8", "ok\n", 3);
	last_window = last_snap = last_evict = col.start_mono;
	evict_check = (uint64_t)(evict_after * 1e9 / 4);
	if (evict_check > EVICT_CHECK_NS)
		evict_check = EVICT_CHECK_NS;
	/* With port 0 the kernel chose one: say which. */
	fprintf(stderr, "seams: agent attached; serving http://%.*s:%u (/metrics /graph.json /report /healthz)\n",
		(int)(strrchr(listen, ':') - listen), listen, httpd_port(h));

	while (!exiting) {
		uint64_t now;

		collector_poll(&col, 100);
		now = now_ns(CLOCK_MONOTONIC);
		if (now - last_window >= (uint64_t)(window * 1e9)) {
			struct graph *g;

			collector_counters(&col);
			g = collector_graph(&col, STAT_WINDOW);
			publish_graph(h, "/graph.json", g);
			graph_free(g);
			collector_window_reset(&col);
			last_window = now;
			window_done = true;
		}
		if (now - last_render >= RENDER_NS) {
			render(&col, h, &page, window_done);
			last_render = now;
		}
		if (now - last_snap >= (uint64_t)(snap_every * 1e9)) {
			snapshot(&col, dir);
			last_snap = now;
		}
		if (now - last_evict >= evict_check) {
			collector_evict(&col, (uint64_t)(evict_after * 1e9));
			/* Give what eviction freed back to the system: RSS is what
			 * an operator (and MemoryMax) sees. */
			malloc_trim(0);
			last_evict = now;
		}
	}
	collector_detach(&col);
	ret = snapshot(&col, dir) ? 1 : 0;
	if (!ret)
		fprintf(stderr, "seams: agent stopped; %s/graph.json written\n", dir);
	collector_report_losses(&col);
out:
	httpd_stop(h);
	sb_free(&page);
	collector_free(&col);
	return ret;
}
