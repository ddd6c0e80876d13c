/* Host checks and the BPF object's life: open, configure, load, attach,
 * read counters, detach. */
#ifndef SEAMS_LOADER_H
#define SEAMS_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/types.h>

#include "seams.h"

struct loader_opts {
	bool verbose;             /* libbpf's own output */
	const uint64_t *cgroups;  /* --cgroup ids; none = the whole host */
	const char *const *cgroup_paths; /* the same, as /proc/PID/cgroup names them */
	size_t ncgroups;
	const uint16_t *pg_ports;  /* PostgreSQL server ports besides 5432 */
	size_t npg_ports;
	int tls_probe;            /* TLS_PROBE_* (collector.h) */
};

struct loader;
struct cgnames;

/* Privileges and BTF.  0, or -1 with one line in err. */
int loader_check_host(char *err, size_t len);

/* Load and attach everything; NULL with one line in err. */
struct loader *loader_start(const struct loader_opts *o, char *err, size_t len);
/* Make the --cgroup allow-list exactly these ids (duplicates are fine):
 * new ones are added, the others removed.  -1 when more than
 * SEAMS_MAX_CGROUPS or the map refused one. */
int loader_set_cgroups(struct loader *l, const uint64_t *ids, size_t n);
/* Call often (it does its work at most once a second): resolve the
 * --cgroup paths again and trace their current ids.  systemd removes a
 * unit's cgroup when it stops and makes a new one, with a new id, at the
 * same path when it starts again. */
void loader_follow_cgroups(struct loader *l, struct cgnames *names, const char *const *args, size_t n);
/* OpenSSL probes: on what a traced process did (type: EV_EXEC, EV_PG_TLS
 * or EV_PG_PLAIN), and on every traced process now and then (it does its
 * work at most every 2 s). */
void loader_tls_note(struct loader *l, pid_t pid, uint32_t type);
void loader_tls_scan(struct loader *l);
struct tlsprobe_stats;
void loader_tls_stats(struct loader *l, struct tlsprobe_stats *s);
/* The ring buffer's fd, for ring_buffer__new(). */
int loader_events_fd(struct loader *l);
/* The per-CPU PostgreSQL rings, mmapped; *ncpu of them. */
struct pg_ring *loader_pg_rings(struct loader *l, int *ncpu);
/* Counters summed over CPUs. */
void loader_counters(struct loader *l, uint64_t out[CNT_MAX]);
/* Detach the programs; maps, counters and the ring stay readable. */
void loader_detach(struct loader *l);
/* Detach and unload; NULL is fine. */
void loader_stop(struct loader *l);

#endif
