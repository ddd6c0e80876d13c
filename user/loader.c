/* Loading: check the host, then the libbpf skeleton order of open -> set
 * rodata -> load -> fill maps -> attach.  Every hook is a BTF tracepoint,
 * so tracefs is not needed. */
#include <errno.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "cgname.h"
#include "collector.h"
#include "loader.h"
#include "seams.skel.h"
#include "tlsprobe.h"

#define TLS_SCAN_NS 2000000000ULL
#define TLS_FULL_SCAN_NS 30000000000ULL

struct loader {
	struct seams_bpf *skel;
	struct pg_ring *rings;  /* mmapped, one per possible CPU */
	size_t rings_len;
	int ncpu;
	uint64_t cgroups[SEAMS_MAX_CGROUPS]; /* what cgroup_allow holds */
	size_t ncgroups;
	uint64_t cgroups_checked_ns;
	struct tlsprobe *tls;
	uint64_t tls_scanned_ns;
	uint64_t tls_full_ns;
};

static bool verbose;

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (!verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static bool has_cap(const struct __user_cap_data_struct *d, int cap)
{
	return d[cap / 32].effective & (1u << (cap % 32));
}

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#define CAP_BPF     39
#endif

/* The hooks seams attaches to every send and receive (Linux 6.3+). */
static bool kernel_has_socket_tracepoints(void)
{
	struct btf *btf = btf__load_vmlinux_btf();
	bool ok;

	if (!btf)
		return true; /* let the load say what is wrong */
	ok = btf__find_by_name_kind(btf, "btf_trace_inet_sock_set_state", BTF_KIND_TYPEDEF) > 0 &&
	     btf__find_by_name_kind(btf, "btf_trace_sock_send_length", BTF_KIND_TYPEDEF) > 0 &&
	     btf__find_by_name_kind(btf, "btf_trace_sock_recv_length", BTF_KIND_TYPEDEF) > 0;
	btf__free(btf);
	return ok;
}

int loader_check_host(char *err, size_t len)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[2] = { { 0 } };

	if (syscall(SYS_capget, &hdr, caps) ||
	    !(has_cap(caps, CAP_SYS_ADMIN) || (has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON)))) {
		snprintf(err, len, "capture needs root (or CAP_BPF and CAP_PERFMON) to load eBPF programs; "
			 "run it with sudo");
		return -1;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		snprintf(err, len, "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); seams "
			 "needs a kernel built with CONFIG_DEBUG_INFO_BTF=y");
		return -1;
	}
	if (!kernel_has_socket_tracepoints()) {
		snprintf(err, len, "this kernel has no sock_send_length/sock_recv_length tracepoints; "
			 "seams needs Linux 6.3 or later");
		return -1;
	}
	return 0;
}

struct loader *loader_start(const struct loader_opts *o, char *err, size_t len)
{
	struct loader *l = calloc(1, sizeof(*l));
	int ret;

	if (!l) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	verbose = o->verbose;
	libbpf_set_print(print_libbpf);
	l->skel = seams_bpf__open();
	if (!l->skel) {
		snprintf(err, len, "cannot open the BPF object: %s", strerror(errno));
		goto fail;
	}
	l->skel->rodata->self_tgid = getpid();
	l->skel->rodata->filter_cgroups = o->ncgroups > 0;
	l->skel->rodata->tls_probing = o->tls_probe != TLS_PROBE_OFF;
	for (size_t i = 0; i < o->npg_ports && i + 1 < SEAMS_MAX_PG_PORTS; i++)
		l->skel->rodata->pg_ports[i + 1] = o->pg_ports[i];
	l->ncpu = libbpf_num_possible_cpus();
	if (l->ncpu <= 0 || bpf_map__set_max_entries(l->skel->maps.pgrings, l->ncpu)) {
		snprintf(err, len, "cannot count this host's CPUs");
		goto fail;
	}
	ret = seams_bpf__load(l->skel);
	if (ret) {
		snprintf(err, len, "the kernel refused seams' BPF programs (%s); run with -v for the "
			 "verifier's log", strerror(-ret));
		goto fail;
	}
	if (loader_set_cgroups(l, o->cgroups, o->ncgroups)) {
		snprintf(err, len, "too many --cgroup options (at most %d)", SEAMS_MAX_CGROUPS);
		goto fail;
	}
	l->rings_len = (sizeof(struct pg_ring) * l->ncpu + getpagesize() - 1) & ~(size_t)(getpagesize() - 1);
	l->rings = mmap(NULL, l->rings_len, PROT_READ | PROT_WRITE, MAP_SHARED,
			bpf_map__fd(l->skel->maps.pgrings), 0);
	if (l->rings == MAP_FAILED) {
		l->rings = NULL;
		snprintf(err, len, "cannot map the PostgreSQL rings: %s", strerror(errno));
		goto fail;
	}
	ret = seams_bpf__attach(l->skel);
	if (ret) {
		snprintf(err, len, "cannot attach seams' BPF programs (%s); run with -v for details",
			 strerror(-ret));
		goto fail;
	}
	if (o->tls_probe != TLS_PROBE_OFF) {
		struct bpf_program *entry[TLS_NFUNCS] = {
			[TLS_WRITE] = l->skel->progs.ssl_write, [TLS_WRITE_EX] = l->skel->progs.ssl_write_ex,
			[TLS_READ] = l->skel->progs.ssl_read, [TLS_READ_EX] = l->skel->progs.ssl_read_ex,
		};

		char why[256];

		l->tls = tlsprobe_new(entry, l->skel->progs.ssl_ret, o->cgroup_paths, o->ncgroups,
				      o->tls_probe == TLS_PROBE_FILE, why, sizeof(why));
		/* The rest of what seams sees does not depend on it. */
		if (!l->tls)
			fprintf(stderr, "seams: PostgreSQL over TLS will only be counted, not decoded: %s; "
				"mount tracefs, or pass --tls-probe off\n", why);
	}
	l->skel->bss->capturing = 1;
	/* Processes already running: probed after capturing starts, since
	 * attaching takes a while and the connections opened meanwhile must
	 * be seen opening.  Their TLS connections are followed from the next
	 * message boundary on. */
	tlsprobe_scan(l->tls, true);
	l->tls_scanned_ns = l->tls_full_ns = now_ns(CLOCK_MONOTONIC);
	return l;
fail:
	loader_stop(l);
	return NULL;
}

static bool has_id(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

int loader_set_cgroups(struct loader *l, const uint64_t *ids, size_t n)
{
	uint64_t want[SEAMS_MAX_CGROUPS];
	size_t nwant = 0, kept = 0;
	__u8 one = 1;
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		if (has_id(want, nwant, ids[i]))
			continue;
		if (nwant == SEAMS_MAX_CGROUPS)
			return -1;
		want[nwant++] = ids[i];
	}
	/* Stale ids go first, so the map never has to hold more than
	 * SEAMS_MAX_CGROUPS at once. */
	for (size_t i = 0; i < l->ncgroups; i++) {
		if (has_id(want, nwant, l->cgroups[i]))
			l->cgroups[kept++] = l->cgroups[i];
		else
			bpf_map__delete_elem(l->skel->maps.cgroup_allow, &l->cgroups[i],
					     sizeof(l->cgroups[i]), 0);
	}
	l->ncgroups = kept;
	for (size_t i = 0; i < nwant; i++) {
		if (has_id(l->cgroups, l->ncgroups, want[i]))
			continue;
		if (bpf_map__update_elem(l->skel->maps.cgroup_allow, &want[i], sizeof(want[i]), &one,
					 sizeof(one), BPF_ANY)) {
			ret = -1;
			continue;
		}
		l->cgroups[l->ncgroups++] = want[i];
	}
	return ret;
}

void loader_tls_note(struct loader *l, pid_t pid, uint32_t type)
{
	tlsprobe_note(l->tls, pid, type);
}

void loader_tls_scan(struct loader *l)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC);

	if (!l->tls || now - l->tls_scanned_ns < TLS_SCAN_NS)
		return;
	l->tls_scanned_ns = now;
	if (now - l->tls_full_ns >= TLS_FULL_SCAN_NS)
		l->tls_full_ns = now;
	tlsprobe_scan_later(l->tls, l->tls_full_ns == now);
}

void loader_tls_stats(struct loader *l, struct tlsprobe_stats *s)
{
	tlsprobe_stats(l ? l->tls : NULL, s);
}

void loader_follow_cgroups(struct loader *l, struct cgnames *names, const char *const *args, size_t n)
{
	uint64_t ids[SEAMS_MAX_CGROUPS], now = now_ns(CLOCK_MONOTONIC);

	if (!n || n > SEAMS_MAX_CGROUPS)
		return;
	if (now - l->cgroups_checked_ns < 1000000000ULL)
		return;
	l->cgroups_checked_ns = now;
	/* A path missing for now (the unit between stop and start) just
	 * traces nothing there until it is back. */
	loader_set_cgroups(l, ids, cgnames_resolve(names, args, n, ids));
}

int loader_events_fd(struct loader *l)
{
	return bpf_map__fd(l->skel->maps.events);
}

struct pg_ring *loader_pg_rings(struct loader *l, int *ncpu)
{
	*ncpu = l->ncpu;
	return l->rings;
}

void loader_counters(struct loader *l, uint64_t out[CNT_MAX])
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t vals[ncpu > 0 ? ncpu : 1];

	for (__u32 k = 0; k < CNT_MAX; k++) {
		out[k] = 0;
		if (ncpu <= 0 || bpf_map__lookup_elem(l->skel->maps.counters, &k, sizeof(k), vals,
						      sizeof(vals), 0))
			continue;
		for (int c = 0; c < ncpu; c++)
			out[k] += vals[c];
	}
}

void loader_detach(struct loader *l)
{
	if (!l)
		return;
	l->skel->bss->capturing = 0;
	tlsprobe_free(l->tls);
	l->tls = NULL;
	seams_bpf__detach(l->skel);
}

void loader_stop(struct loader *l)
{
	if (!l)
		return;
	tlsprobe_free(l->tls);
	if (l->rings)
		munmap(l->rings, l->rings_len);
	seams_bpf__destroy(l->skel);
	free(l);
}
