/* Dropping privileges once the BPF programs are attached: the agent keeps
 * running for months and sees every query on the host, so after attach it
 * keeps only what naming services still needs. */
#ifndef SEAMS_PRIVS_H
#define SEAMS_PRIVS_H

#include <stddef.h>

/* What `seams agent` keeps after attach (see privs.c for why each). */
extern const int privs_agent_keep[];
extern const size_t privs_agent_nkeep;

/* Drop every capability not in keep[] from the bounding, permitted,
 * effective and inheritable sets, clear the ambient set and set
 * no_new_privs.  Kept capabilities the process does not hold stay absent.
 * Capabilities belong to a thread, not to the process, so this refuses to
 * run once a second thread exists: call it after attach and before any
 * thread (an HTTP server's) starts.
 * 0: done.  1: done, but the bounding set could not shrink (no CAP_SETPCAP)
 * and err says so; nothing can come back anyway (permitted is cut and
 * no_new_privs set).  -1: failed, one line in err. */
int privs_drop(const int *keep, size_t nkeep, char *err, size_t len);

#endif
