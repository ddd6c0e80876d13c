/* seams merge: graphs from several hosts into one. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "graph.h"
#include "merge.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: seams merge A.json B.json ... [--output FILE]\n"
		"\n"
		"Merges graphs captured on several hosts: services with the same name\n"
		"become one, an external address:port becomes the service that accepted\n"
		"it on another host, counts add up.  Writes to stdout without --output.\n"
		"\n"
		"  -o, --output FILE  write FILE atomically instead of stdout\n");
}

int cmd_merge(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *output = "-";
	struct graph **in = NULL, *out = NULL;
	json_t *warnings = json_array(), *w;
	char err[512];
	size_t n = 0, i;
	int c, ret = 1;

	optind = 0; /* reinitialize: tests run several commands in one process */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			output = optarg;
			break;
		case 'h':
			usage(stdout);
			ret = 0;
			goto out;
		default:
			ret = bad_option("merge", argv);
			goto out;
		}
	}
	if (optind >= argc) {
		die_msg("merge needs graph files; run 'seams merge --help'");
		ret = 2;
		goto out;
	}

	in = calloc(argc - optind, sizeof(*in));
	if (!in)
		goto out;
	for (; optind < argc; optind++) {
		in[n] = graph_load(argv[optind], err, sizeof(err));
		if (!in[n]) {
			die_msg("%s", err);
			goto out;
		}
		n++;
	}
	out = merge_graphs(in, n, warnings, err, sizeof(err));
	if (!out) {
		die_msg("%s", err);
		goto out;
	}
	json_array_foreach(warnings, i, w)
		die_msg("warning: %s", json_string_value(w));
	if (graph_write(out, output, err, sizeof(err))) {
		die_msg("%s", err);
		goto out;
	}
	ret = 0;
out:
	for (i = 0; i < n; i++)
		graph_free(in[i]);
	free(in);
	graph_free(out);
	json_decref(warnings);
	return ret;
}
