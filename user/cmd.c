/* What every subcommand shares: the one-line error a user sees. */
#include <stdarg.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <linux/types.h>

#include "seams.h"

#include "cmd.h"

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

int add_cgroup_arg(const char **args, size_t *n, const char *arg)
{
	if (*n == SEAMS_MAX_CGROUPS) {
		die_msg("too many --cgroup options (at most %d)", SEAMS_MAX_CGROUPS);
		return -1;
	}
	args[(*n)++] = arg;
	return 0;
}

int add_pg_port(uint16_t *ports, size_t *n, const char *arg)
{
	char *end;
	unsigned long port = strtoul(arg, &end, 10);

	if (*end || !port || port > 65535) {
		die_msg("--pg-port '%s' is not a TCP port number (1-65535)", arg);
		return -1;
	}
	if (*n == SEAMS_MAX_PG_PORTS - 1) {
		die_msg("too many --pg-port options (at most %d)", SEAMS_MAX_PG_PORTS - 1);
		return -1;
	}
	ports[(*n)++] = (uint16_t)port;
	return 0;
}
