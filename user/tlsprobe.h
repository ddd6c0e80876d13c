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
	uint64_t unprobed;   /* processes left out: over SEAMS_MAX_TLS_PROCS, attach failed, or execs queued past EXEC_QUEUE */
	uint64_t released;   /* processes let go while running: no TLS PostgreSQL */
};

struct tlsprobe;

/* entry[TLS_*]: the entry programs; ret: the one for every return.
 * scopes: --cgroup paths as /proc/PID/cgroup shows them (none: every
 * process).  file_wide: probe each TLS file once for every process that
 * maps it (the programs keep to traced processes, but every process
 * calling into the file takes the breakpoint) rather than per traced
 * process.  The probes hang on tracefs uprobe events, which tlsprobe_free
 * removes.  NULL, and why in err, when out of memory or without tracefs. */
struct tlsprobe *tlsprobe_new(struct bpf_program *const entry[TLS_NFUNCS], struct bpf_program *ret,
			      const char *const *scopes, size_t nscopes, bool file_wide, char *err, size_t len);
/* Process pid (traced: the caller checked) did type, on the probes' own
 * thread; never waits for an attach.  EV_EXEC: probed at once if it may
 * use TLS, else looked at again 100 ms later.  EV_PG_TLS: probed if not
 * yet, and kept.  EV_PG_PLAIN: let go, unless it used TLS too. */
void tlsprobe_note(struct tlsprobe *tp, pid_t pid, uint32_t type);
/* Probe the traced processes that started since the last scan (full: all
 * of them, and the libraries they loaded since); let go of processes that
 * exited.  tlsprobe_scan does it now, on the caller's thread (before the
 * first tlsprobe_pid or tlsprobe_scan_later); tlsprobe_scan_later on the
 * probes' own thread. */
void tlsprobe_scan(struct tlsprobe *tp, bool full);
void tlsprobe_scan_later(struct tlsprobe *tp, bool full);
/* As of the probes' thread's last step: never waits for an attach. */
void tlsprobe_stats(struct tlsprobe *tp, struct tlsprobe_stats *s);
/* Detach everything. */
void tlsprobe_free(struct tlsprobe *tp);

#endif
