/* Subcommands: each takes argv with argv[0] = the subcommand name and returns
 * the process exit status. */
#ifndef SEAMS_CMD_H
#define SEAMS_CMD_H

#include <stddef.h>
#include <stdint.h>

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

/* Option values shared by capture and agent: each prints its one line and
 * returns -1 when the value is bad. */
int parse_seconds(const char *opt, const char *arg, double *out);
int add_cgroup_arg(const char **args, size_t *n, const char *arg);
int add_pg_port(uint16_t *ports, size_t *n, const char *arg);

#endif
