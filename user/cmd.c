/* What every subcommand shares: the one-line error a user sees. */
#include <stdarg.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "graph.h"

void die_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("seams: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int bad_option(const char *cmd, char **argv)
{
	die_msg("option '%s' is unknown or needs a value; see 'seams %s --help'", argv[optind - 1], cmd);
	return 2;
}

int extra_args(const char *cmd, int argc, char **argv)
{
	if (optind >= argc)
		return 0;
	die_msg("unexpected argument '%s'; see 'seams %s --help'", argv[optind], cmd);
	return 2;
}

struct graph *graph_arg(const char *cmd, int argc, char **argv, int *status)
{
	char err[512];
	struct graph *g;

	if (optind != argc - 1) {
		die_msg("%s takes one graph file; run 'seams %s --help'", cmd, cmd);
		*status = 2;
		return NULL;
	}
	g = graph_load(argv[optind], err, sizeof(err));
	if (!g) {
		die_msg("%s", err);
		*status = 1;
	}
	return g;
}

int parse_seconds(const char *opt, const char *arg, double *out)
{
	char *end;
	double v = strtod(arg, &end);

	if (*end || !(v > 0) || v > 1e9) {
		die_msg("%s '%s' is not a positive number of seconds", opt, arg);
		return -1;
	}
	*out = v;
	return 0;
}
