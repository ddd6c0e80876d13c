/* Subcommands: each takes argv with argv[0] = the subcommand name and returns
 * the process exit status. */
#ifndef SEAMS_CMD_H
#define SEAMS_CMD_H

int cmd_capture(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_agent(int argc, char **argv);

/* One line on stderr, "seams: ...", for errors a user can cause. */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* getopt found an unknown option or one missing its value: say which, in
 * one line (getopt's own message plus the usage would be several).  Needs
 * opterr = 0.  Returns the exit status for bad usage, 2. */
int bad_option(const char *cmd, char **argv);

/* Arguments left after the options, which no subcommand takes: one line
 * naming the first, and 2; else 0. */
int extra_args(const char *cmd, int argc, char **argv);

struct graph;

/* The one graph file left after the options: loaded, or NULL with one line
 * said and *status set (2: not exactly one file, 1: it would not load). */
struct graph *graph_arg(const char *cmd, int argc, char **argv, int *status);

/* A positive number of seconds for option opt: -1 with one line said
 * when arg is not one. */
int parse_seconds(const char *opt, const char *arg, double *out);

#endif
