/* OpenSSL probes, per process: the uprobes of bpf/tls.bpf.h attached to
 * the TLS library of every traced process (libssl.so.*, or an executable
 * that exports SSL_write, such as node), and to no other process, so an
 * untraced one never hits a breakpoint. */
#ifndef SEAMS_TLSPROBE_H
#define SEAMS_TLSPROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bpf_program;

enum { TLS_WRITE, TLS_WRITE_EX, TLS_READ, TLS_READ_EX, TLS_NFUNCS };

struct tlsprobe_stats {
	uint64_t procs;      /* processes probed now (per process) */
	uint64_t files;      /* files probed for every process (file-wide) */
	uint64_t links;      /* uprobes attached now */
	uint64_t unprobed;   /* processes left out: over SEAMS_MAX_TLS_PROCS, or attach failed */
};

struct tlsprobe;

/* entry[TLS_*]: the entry programs; ret: the one for every return.
 * scopes: --cgroup paths as /proc/PID/cgroup shows them (none: every
 * process).  file_wide: probe each TLS file once for every process that
 * maps it (the programs keep to traced processes, but every process
 * calling into the file takes the breakpoint) rather than per traced
 * process.  NULL when out of memory. */
struct tlsprobe *tlsprobe_new(struct bpf_program *const entry[TLS_NFUNCS], struct bpf_program *ret,
			      const char *const *scopes, size_t nscopes, bool file_wide);
/* Probe process pid (traced: the caller checked), e.g. right after its exec. */
void tlsprobe_pid(struct tlsprobe *tp, pid_t pid);
/* Probe the traced processes that started since the last scan (full: all
 * of them, and the libraries they loaded since); let go of processes that
 * exited. */
void tlsprobe_scan(struct tlsprobe *tp, bool full);
void tlsprobe_stats(const struct tlsprobe *tp, struct tlsprobe_stats *s);
/* Detach everything. */
void tlsprobe_free(struct tlsprobe *tp);

#endif
