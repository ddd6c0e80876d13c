/* seams: the command table.  Each subcommand lives in its own cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

struct cmd {
	const char *name;
	int (*func)(int argc, char **argv);
	const char *help;
};

static const struct cmd cmds[] = {
	{ "capture", cmd_capture, "trace this host and write the service graph" },
	{ "report", cmd_report, "list the coupling findings in a graph" },
	{ "export", cmd_export, "draw a graph as dot, mermaid, svg or html" },
	{ "merge", cmd_merge, "merge graphs captured on several hosts" },
	{ "agent", cmd_agent, "run until stopped, serving metrics and graphs over HTTP" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: seams COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
	fprintf(f, "\n'seams COMMAND --help' shows a command's options.\n");
}

int main(int argc, char **argv)
{
	const struct cmd *found = NULL;
	size_t n;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	/* Unambiguous prefixes are accepted, as bpftool does. */
	n = strlen(argv[1]);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strncmp(cmds[i].name, argv[1], n))
			continue;
		if (found) {
			die_msg("'%s' is ambiguous; run 'seams --help' for the commands", argv[1]);
			return 2;
		}
		found = &cmds[i];
		if (strlen(found->name) == n)
			break;
	}
	if (!found) {
		die_msg("unknown command '%s'; run 'seams --help' for the commands", argv[1]);
		return 2;
	}
	return found->func(argc - 1, argv + 1);
}
