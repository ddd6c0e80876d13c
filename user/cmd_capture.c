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

#include "cmd.h"
#include "collector.h"

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	exiting = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: seams capture [--duration SECONDS] [--output FILE|-] [--cgroup PATH]...\n"
		"                     [--pg-port PORT]... [--tls-probe process|file|off] [-v]\n"
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
		"      --tls-probe MODE    how OpenSSL is probed to decode PostgreSQL over TLS:\n"
		"                          process (default: each traced process, from its\n"
		"                          exec; nothing else pays), file (each libssl once:\n"
		"                          traced from their first call, but every process\n"
		"                          using it takes the breakpoint), off (only counted)\n"
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

static void status_line(struct collector *c)
{
	const uint64_t *cnt = c->cnt;

	fprintf(stderr, "\r\033[K  %llu events  %zu connections open  %llu statements  "
		"%llu lost events  %llu PostgreSQL bytes lost",
		(unsigned long long)c->events, conntrack_open_count(&c->ct),
		(unsigned long long)c->pg.statements,
		(unsigned long long)(cnt[CNT_LOST_EVENTS] + cnt[CNT_PG_EVENTS_LOST]),
		(unsigned long long)cnt[CNT_PG_LOST]);
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
		COLLECTOR_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct collector col = { 0 };
	struct collector_opts co = { 0 };
	const char *output = "graph.json";
	double duration = 0;
	struct graph *g = NULL;
	uint64_t last_status = 0, end;
	bool tty = isatty(STDERR_FILENO);
	int opt, ret = 1;

	optind = 0; /* reinitialize: tests run several commands in one process */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "d:o:c:p:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			if (parse_seconds("--duration", optarg, &duration))
				return 2;
			break;
		case 'o':
			output = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (collector_opt(&co, opt, optarg, "capture", argv))
				return 2;
		}
	}
	if (extra_args("capture", argc, argv))
		return 2;
	if (check_output(output))
		return 1;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (collector_start(&col, &co))
		goto out;
	if (duration > 0)
		fprintf(stderr, "seams: attached; capturing for %g s (Ctrl-C stops early)\n", duration);
	else
		fprintf(stderr, "seams: attached; capturing until Ctrl-C\n");

	while (!exiting) {
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		int err_poll;

		if (duration > 0 && now - col.start_mono >= (uint64_t)(duration * 1e9))
			break;
		/* Events are mostly submitted without a wakeup: drain on the timer. */
		err_poll = collector_poll(&col, 100);
		if (err_poll < 0) {
			die_msg("reading events failed: %s", strerror(-err_poll));
			break;
		}
		if (tty && now - last_status >= 500000000ULL) {
			collector_counters(&col);
			status_line(&col);
			last_status = now;
		}
	}
	collector_detach(&col);
	if (tty)
		fprintf(stderr, "\r\033[K");
	g = collector_graph(&col, STAT_TOTAL);
	end = now_ns(CLOCK_REALTIME);
	if (!g) {
		die_msg("out of memory building the graph");
		goto out;
	}
	ret = write_graph(g, output) ? 1 : 0;
	fprintf(stderr, "seams: captured %.1f s: %llu events, %llu lost; %zu nodes, %zu edges%s%s\n",
		(double)(end - col.start_real) / 1e9, (unsigned long long)col.events,
		(unsigned long long)col.cnt[CNT_LOST_EVENTS], graph_node_count(g), graph_edge_count(g),
		ret ? "" : " -> ", ret ? "" : (strcmp(output, "-") ? output : "stdout"));
	collector_report_losses(&col);
out:
	graph_free(g);
	collector_free(&col);
	return ret;
}
