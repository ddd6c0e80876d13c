/* Capabilities after attach: the programs and maps are loaded, so CAP_BPF,
 * CAP_PERFMON and root's others would only serve an attacker who got
 * control of a daemon that parses untrusted wire traffic. */
#include <errno.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "privs.h"

const int privs_agent_keep[] = {
	/* cgname.c names a cgroup from the id BPF reports with
	 * open_by_handle_at() on the cgroup2 mount, which the kernel allows
	 * only with CAP_DAC_READ_SEARCH.  Cgroups appear all the time, so this
	 * is needed for as long as the agent runs. */
	CAP_DAC_READ_SEARCH,
	/* cg_unix_listener() finds who listens on a PostgreSQL Unix socket by
	 * reading /proc/PID/fd of every process, and /proc/PID/cmdline, comm
	 * and cgroup name them: for another user's process (postgres runs as
	 * postgres) /proc/PID/fd needs ptrace read access, i.e. CAP_SYS_PTRACE
	 * when the uids differ.  It only grants reading /proc; the agent never
	 * calls ptrace(). */
	CAP_SYS_PTRACE,
};
const size_t privs_agent_nkeep = sizeof(privs_agent_keep) / sizeof(privs_agent_keep[0]);

/* Highest capability the running kernel knows; those above it cannot be
 * held, and naming one in keep[] is a mistake. */
static int last_cap(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
	int last = -1;

	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = -1;
		fclose(f);
	}
	if (last < 0)
		/* /proc not mounted: the bounding set answers EINVAL past the end. */
		for (last = 0; last < 63 && prctl(PR_CAPBSET_READ, last + 1, 0, 0, 0) >= 0; last++)
			;
	return last;
}

static int thread_count(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

static int caps_get(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };

	memset(d, 0, 2 * sizeof(*d));
	return syscall(SYS_capget, &h, d);
}

static int caps_set(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };

	return syscall(SYS_capset, &h, d);
}

static bool in_set(uint64_t set, int cap)
{
	return cap >= 0 && cap < 64 && (set >> cap & 1);
}

int privs_drop(const int *keep, size_t nkeep, char *err, size_t len)
{
	struct __user_cap_data_struct d[2];
	uint64_t want = 0, permitted;
	int last = last_cap(), threads = thread_count(), stuck = -1;

	for (size_t i = 0; i < nkeep; i++) {
		if (keep[i] < 0 || keep[i] > last) {
			snprintf(err, len, "cannot keep capability %d: this kernel knows 0..%d", keep[i], last);
			return -1;
		}
		want |= 1ULL << keep[i];
	}
	if (threads != 1) {
		/* Another thread would keep every capability it has. */
		snprintf(err, len, "cannot drop privileges with %d threads running (capabilities are "
			 "per thread); drop them before starting any", threads);
		return -1;
	}
	if (caps_get(d)) {
		snprintf(err, len, "cannot read this process's capabilities: %s", strerror(errno));
		return -1;
	}
	permitted = d[0].permitted | (uint64_t)d[1].permitted << 32;

	/* Shrinking the bounding set takes CAP_SETPCAP in the effective set; a
	 * process given it only as permitted may raise it for this. */
	if (in_set(permitted, CAP_SETPCAP) && !(d[0].effective & 1u << CAP_SETPCAP)) {
		d[0].effective |= 1u << CAP_SETPCAP;
		if (caps_set(d)) {
			snprintf(err, len, "cannot raise CAP_SETPCAP to drop capabilities: %s", strerror(errno));
			return -1;
		}
	}
	for (int cap = 0; cap <= last; cap++) {
		if (in_set(want, cap) || prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)) {
			if (errno != EPERM) {
				snprintf(err, len, "cannot drop capability %d from the bounding set: %s", cap,
					 strerror(errno));
				return -1;
			}
			if (stuck < 0)
				stuck = cap;
		}
	}
	/* Ambient capabilities would survive an execve; kernels before 4.3
	 * have none and answer EINVAL. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) {
		snprintf(err, len, "cannot clear the ambient capabilities: %s", strerror(errno));
		return -1;
	}
	/* Permitted last: CAP_SETPCAP was needed above, and once a capability
	 * leaves the permitted set nothing but an execve can bring it back. */
	permitted &= want;
	d[0].permitted = d[0].effective = (uint32_t)permitted;
	d[1].permitted = d[1].effective = (uint32_t)(permitted >> 32);
	d[0].inheritable = d[1].inheritable = 0;
	if (caps_set(d)) {
		snprintf(err, len, "cannot drop capabilities: %s", strerror(errno));
		return -1;
	}
	/* ...and no execve either: no setuid binary or file capability can
	 * raise them again. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		snprintf(err, len, "cannot set no_new_privs: %s", strerror(errno));
		return -1;
	}
	if (stuck >= 0) {
		snprintf(err, len, "capability %d and maybe others stay in the bounding set (no "
			 "CAP_SETPCAP); they are out of the permitted set and cannot come back", stuck);
		return 1;
	}
	return 0;
}
