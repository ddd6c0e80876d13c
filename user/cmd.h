/* Subcommands: each takes argv with argv[0] = the subcommand name and returns
 * the process exit status. */
#ifndef SEAMS_CMD_H
#define SEAMS_CMD_H

int cmd_capture(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_merge(int argc, char **argv);

/* One line on stderr, "seams: ...", for errors a user can cause. */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
