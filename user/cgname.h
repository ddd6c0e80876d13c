/* cgroup v2 ids -> paths -> service names a person recognizes. */
#ifndef SEAMS_CGNAME_H
#define SEAMS_CGNAME_H

#include <stddef.h>
#include <stdint.h>

#include "u64map.h"

struct cgnames {
	char mount[4096];   /* where cgroup2 is mounted */
	int mount_fd;
	uint64_t root_id;   /* id of the v2 root: its processes are named by comm */
	struct u64map paths;/* id -> malloc'd path relative to the mount ("/a/b") */
};

/* Find the cgroup2 mount in /proc/self/mountinfo.  -1 when there is none. */
int cg2_find_mount(char *buf, size_t len);

int cgnames_init(struct cgnames *c);
void cgnames_free(struct cgnames *c);

/* The path of a cgroup id, "/" for the root; NULL when the cgroup is gone. */
const char *cgnames_path(struct cgnames *c, uint64_t id);

/* Forget the names looked up so far (they are looked up again). */
void cgnames_evict(struct cgnames *c);

/* Resolve a user's --cgroup argument (absolute under the mount, or relative
 * to it, or a full filesystem path) to its id; 0 when it does not exist. */
uint64_t cgnames_lookup(struct cgnames *c, const char *arg, char *path, size_t len);

/* The current ids of the --cgroup arguments that exist now, into ids (room
 * for nargs); returns how many.  A cgroup removed and made again at the
 * same path (a systemd unit restarting) has a new id. */
size_t cgnames_resolve(struct cgnames *c, const char *const *args, size_t nargs, uint64_t *ids);

/* The service name for a cgroup path: systemd units lose their suffix,
 * containers are named by their short id, plain directories by their last
 * component, and the root cgroup by the process name. */
void cg_service_name(const char *path, const char *comm, char *out, size_t len);

/* Make a name from the kernel valid UTF-8 in place, so that one name maps
 * to one JSON string: a character cut at the end (a comm keeps only 15
 * bytes) is dropped, any other byte that is not UTF-8 becomes '?'. */
void utf8_clean(char *s);

/* The process listening on a Unix socket path: its cgroup v2 path and name.
 * -1 when no process on this host listens there. */
int cg_unix_listener(const char *sockpath, char *cgroup, size_t cglen, char *comm, size_t commlen);

#endif
