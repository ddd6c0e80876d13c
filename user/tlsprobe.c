/* OpenSSL probes per process (see tlsprobe.h).  A uprobe attached for one
 * process puts breakpoints only in that process's memory, and a library
 * the process maps later gets them as it is mapped: a process that may
 * use TLS (its executable exports SSL_*, links libssl or libpq, or is an
 * interpreter that loads them at run time) is probed right after its
 * exec, before it loads libssl, on every libssl file seen so far.  Any
 * other process that exec'd is looked at once more 100 ms later, when its
 * libraries are mapped.  A periodic scan catches the rest: processes
 * already running at the start, forked without exec, or loading a libssl
 * from elsewhere: every 2 s the processes that are new since the last
 * scan, every 30 s all of them again (a process already seen that dlopens
 * a libssl later is probed within 30 s).
 *
 * All of it runs on a thread of its own, so the collector never waits for
 * the kernel's uprobe registration.
 *
 * How they attach matters more: a uprobe perf event of its own (what
 * libbpf makes) registers and unregisters a uprobe each time, under a
 * kernel-wide mutex, and each unregistration waits for an RCU tasks-trace
 * grace period: 20 python processes' probes took 17 s to detach, and an
 * exec storm queued attaches behind detaches.  Instead each SSL function
 * of a file is one tracefs uprobe event, created once; the programs hang
 * on it once, through a "carrier" perf event on seams' own process (the
 * kernel runs the programs of an event for every process its filter
 * admits); and a process is probed by opening a perf event on it for
 * that trace event, which only adds it to the filter: 160 opens took
 * 38 ms, their closes 77 ms.
 *
 * A process probed this way pays on every context switch, not only on its
 * SSL calls: the kernel switches its perf events in and out with it, and
 * 8 of them made a pipe ping-pong 20-25% slower (`perf bench sched pipe`).
 * So a process keeps its probes only while it may use them for
 * PostgreSQL: the framer reports each SSLRequest's answer (EV_PG_TLS,
 * EV_PG_PLAIN) and each TLS stream it follows.  A process whose client got
 * 'N' is let go at the next drain (pgbench and psql ask for TLS by default), one
 * with no TLS PostgreSQL after UNUSED_S too; one that gets 'S' later is
 * probed again then, which may miss its connection's first messages. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "clock.h"
#include "seams.h"
#include "tlsprobe.h"

#define MAX_FILES     128  /* distinct TLS executables and libraries */
#define MAX_SEEN      512  /* files looked at, TLS or not (round robin) */
#define EXEC_QUEUE    256  /* execs and other notes waiting for the worker */
#define LATER_NS      100000000ULL /* a second look at an exec'd process */
#define MAX_PROC_LIBS 16   /* TLS libraries probed per process, or file-wide */
/* A process probed at exec that has not mapped a TLS library by then is
 * let go (its slot is needed more elsewhere); a later dlopen is caught by
 * the scan. */
#define GRACE_S       10
/* A process probed that has not used TLS for PostgreSQL by then is let go
 * (its context switches cost more while probed). */
#define UNUSED_S      30
#define MAX_GONE      1024 /* processes let go, not probed again by scans */

static const char *const funcs[TLS_NFUNCS] = { "SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex" };

/* Where distributions put the shared libssl; probed in every new process. */
static const char *const lib_dirs[] = {
	"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib",
};
static const char *const lib_names[] = { "libssl.so.3", "libssl.so.1.1" };

struct tls_file {
	dev_t dev;
	ino_t ino;
	bool tls;                    /* exports SSL_write */
	uint64_t off[TLS_NFUNCS];    /* file offsets; 0: not exported */
	/* Per SSL function, entry and return (2 * k, 2 * k + 1): */
	int ev[2 * TLS_NFUNCS];      /* the tracefs event's id; 0: not made */
	struct bpf_link *carrier[2 * TLS_NFUNCS]; /* the program on it */
	bool ev_failed;              /* the kernel refused: not tried again */
	int fd;                      /* O_PATH: names it after the process that showed it is gone */
};

/* A file looked at once, by inode: fi is its index in files when it
 * exports SSL_*; loads_tls: an executable that links libssl or libpq, or
 * an interpreter that loads them itself. */
struct seen_file {
	dev_t dev;
	ino_t ino;
	int fi;
	bool loads_tls;
};

struct tls_proc {
	pid_t pid;
	uint64_t start;              /* start time: a reused pid is another process */
	bool seen;                   /* found by the current scan */
	bool mapped;                 /* a TLS file is in its maps */
	bool wanted;                 /* it used TLS for PostgreSQL */
	time_t probed;               /* when first probed */
	int files[MAX_PROC_LIBS];    /* indexes in tp->files */
	int nfiles;
	int fds[MAX_PROC_LIBS][2 * TLS_NFUNCS]; /* perf event fd + 1; 0: none */
};

/* What a traced process did, for the worker: EV_EXEC, EV_PG_TLS or
 * EV_PG_PLAIN. */
struct exec_req {
	pid_t pid;
	uint32_t type;
	uint64_t due_ns;             /* for a second look: when */
};

/* A process let go: a scan does not probe it again. */
struct gone {
	pid_t pid;
	uint64_t start;
};

/* The collector hands execs and scans to the worker; the worker hands
 * back its figures, so a snapshot never waits for an attach. */
struct worker {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct exec_req q[EXEC_QUEUE];   /* new execs, a ring */
	size_t qhead, qn;
	bool scan, full, stop, started;
	uint64_t dropped;                /* execs the queue had no room for */
	struct tlsprobe_stats stats;     /* as of the worker's last step */
	pthread_t th;
};

struct tlsprobe {
	struct worker w;
	char tracefs[64];            /* where tracefs is mounted */
	char group[32];              /* seams_PID: our tracefs events */
	struct bpf_program *entry[TLS_NFUNCS], *ret;
	char **scopes;
	size_t nscopes;
	struct tls_file files[MAX_FILES];
	int nfiles;
	struct seen_file seen[MAX_SEEN];
	int nseen, seen_next;
	struct exec_req later[EXEC_QUEUE]; /* second looks, in due order (worker only) */
	size_t lhead, ln;
	int system[8];               /* the distribution's libssl files */
	int nsystem;
	struct tls_proc procs[SEAMS_MAX_TLS_PROCS];
	int nprocs;
	bool file_wide;              /* probes for every process (pid -1) */
	struct tls_proc all;         /* those probes */
	uint64_t unprobed;
	uint64_t released;           /* processes let go while running */
	struct gone gone[MAX_GONE];  /* the latest of them, round robin */
	int ngone, gone_next;
	pid_t self;
	/* The pids the last scan found, sorted: a scan between full ones
	 * looks only at the others, since reading every process's cgroup,
	 * stat and maps every 2 s cost the collector more than decoding. */
	pid_t *known;
	size_t nknown;
};

static bool has_prefix(const char *s, const char *const *prefixes, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		if (!strncmp(s, prefixes[i], strlen(prefixes[i])))
			return true;
	return false;
}

/* The libraries that bring TLS to a program linking them directly. */
static const char *const tls_needed[] = { "libssl.so", "libpq.so" };

/* The file offsets of the SSL_* functions a file exports, and whether it
 * links a TLS library directly (DT_NEEDED). */
static void elf_scan(const char *path, struct tls_file *f, bool *links_tls)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	Elf_Scn *scn = NULL;
	Elf *elf;

	*links_tls = false;
	if (fd < 0)
		return;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	while (elf && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || !sh.sh_entsize)
			continue;
		if (sh.sh_type == SHT_DYNAMIC) {
			data = elf_getdata(scn, NULL);
			for (size_t i = 0; data && i < sh.sh_size / sh.sh_entsize; i++) {
				GElf_Dyn dyn;

				if (gelf_getdyn(data, (int)i, &dyn) && dyn.d_tag == DT_NEEDED &&
				    has_prefix(elf_strptr(elf, sh.sh_link, dyn.d_un.d_val), tls_needed,
					       sizeof(tls_needed) / sizeof(tls_needed[0])))
					*links_tls = true;
			}
			continue;
		}
		if (sh.sh_type != SHT_DYNSYM)
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			GElf_Shdr in;
			const char *name;

			if (!gelf_getsym(data, (int)i, &sym) || !sym.st_value || sym.st_shndx == SHN_UNDEF ||
			    GELF_ST_TYPE(sym.st_info) != STT_FUNC)
				continue;
			name = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (!name || strncmp(name, "SSL_", 4))
				continue;
			for (int k = 0; k < TLS_NFUNCS; k++) {
				if (strcmp(name, funcs[k]) || !gelf_getshdr(elf_getscn(elf, sym.st_shndx), &in))
					continue;
				/* The uprobe wants an offset in the file, not an address. */
				f->off[k] = sym.st_value - in.sh_addr + in.sh_offset;
			}
		}
	}
	if (elf)
		elf_end(elf);
	close(fd);
	f->tls = f->off[TLS_WRITE] && f->off[TLS_READ];
}

/* Interpreters whose database drivers load libpq or libssl at run time:
 * a script connects right after its imports, too soon for a second look. */
static const char *const interpreters[] = { "python", "perl", "ruby", "php" };

/* The file at path (through /proc/PID/... links too), read once: every
 * executable a busy host runs passes here, so what is not TLS is only
 * remembered, in a bounded table, and forgotten first. */
static const struct seen_file *look(struct tlsprobe *tp, const char *path)
{
	struct seen_file *s;
	struct tls_file f;
	struct stat st;
	char target[PATH_MAX];
	ssize_t n;
	bool links_tls;

	if (stat(path, &st) || !S_ISREG(st.st_mode))
		return NULL;
	for (int i = 0; i < tp->nseen; i++)
		if (tp->seen[i].dev == st.st_dev && tp->seen[i].ino == st.st_ino)
			return &tp->seen[i];
	memset(&f, 0, sizeof(f));
	f.dev = st.st_dev;
	f.ino = st.st_ino;
	elf_scan(path, &f, &links_tls);
	if (f.tls && tp->nfiles == MAX_FILES)
		return NULL;
	if (tp->nseen < MAX_SEEN) {
		s = &tp->seen[tp->nseen++];
	} else {
		/* Full: replace a file that is not TLS; a TLS one keeps its probes' index. */
		for (int i = 0; i < MAX_SEEN && tp->seen[tp->seen_next].fi >= 0; i++)
			tp->seen_next = (tp->seen_next + 1) % MAX_SEEN;
		s = &tp->seen[tp->seen_next];
		tp->seen_next = (tp->seen_next + 1) % MAX_SEEN;
		if (s->fi >= 0)
			return NULL; /* MAX_SEEN TLS files: cannot be, MAX_FILES is lower */
	}
	n = readlink(path, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = '\0';
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->fi = -1;
	s->loads_tls = f.tls || links_tls ||
		       has_prefix(strrchr(target, '/') ? strrchr(target, '/') + 1 : target, interpreters,
				  sizeof(interpreters) / sizeof(interpreters[0]));
	if (f.tls) {
		f.fd = open(path, O_PATH | O_CLOEXEC);
		s->fi = tp->nfiles;
		tp->files[tp->nfiles++] = f;
	}
	return s;
}

static int file_index(struct tlsprobe *tp, const char *path)
{
	const struct seen_file *s = look(tp, path);

	return s ? s->fi : -1;
}

static uint64_t proc_start(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fp = fopen(path, "r");
	if (!fp)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	/* After the command name, which may hold anything: field 22. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
			 &start) != 1)
		return 0;
	return start;
}

static void proc_release(struct tls_proc *p)
{
	for (int i = 0; i < p->nfiles; i++)
		for (int k = 0; k < 2 * TLS_NFUNCS; k++)
			if (p->fds[i][k])
				close(p->fds[i][k] - 1);
	memset(p, 0, sizeof(*p));
}

/* A perf event on trace event id for process pid (-1: every process). */
static int perf_open(int id, pid_t pid)
{
	struct perf_event_attr a = {
		.type = PERF_TYPE_TRACEPOINT,
		.size = sizeof(a),
		.config = (uint64_t)id,
		.sample_period = 1,
	};

	/* Every process: an event on one CPU, which for a uprobe runs the
	 * programs wherever it is hit. */
	return (int)syscall(SYS_perf_event_open, &a, pid, pid < 0 ? 0 : -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static bool tracefs_write(struct tlsprobe *tp, const char *line)
{
	char path[128];
	int fd;
	bool ok;

	snprintf(path, sizeof(path), "%s/uprobe_events", tp->tracefs);
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return false;
	ok = write(fd, line, strlen(line)) == (ssize_t)strlen(line);
	close(fd);
	return ok;
}

static void event_name(char *buf, size_t len, int fi, int k)
{
	snprintf(buf, len, "f%d_%d", fi, k);
}

static void event_remove(struct tlsprobe *tp, int fi, int k)
{
	char name[32], cmd[96];

	event_name(name, sizeof(name), fi, k);
	snprintf(cmd, sizeof(cmd), "-:%s/%s\n", tp->group, name);
	tracefs_write(tp, cmd);
}

/* The trace events of file fi, made on first use, with the programs on
 * them.  The kernel resolves the path once, as it is written: through
 * seams' own descriptor, which outlives the process the file came from. */
static bool file_events(struct tlsprobe *tp, int fi)
{
	struct tls_file *f = &tp->files[fi];

	if (f->ev_failed || f->fd < 0)
		return false;
	for (int k = 0; k < 2 * TLS_NFUNCS; k++) {
		char name[32], line[PATH_MAX + 128], id[32] = "";
		int fd;

		if (f->ev[k] || !f->off[k / 2])
			continue;
		event_name(name, sizeof(name), fi, k);
		snprintf(line, sizeof(line), "%c:%s/%s /proc/self/fd/%d:0x%llx\n", k % 2 ? 'r' : 'p', tp->group,
			 name, f->fd, (unsigned long long)f->off[k / 2]);
		if (!tracefs_write(tp, line))
			goto fail;
		snprintf(line, sizeof(line), "%s/events/%s/%s/id", tp->tracefs, tp->group, name);
		fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && read(fd, id, sizeof(id) - 1) < 0)
			id[0] = '\0';
		if (fd >= 0)
			close(fd);
		fd = atoi(id) > 0 ? perf_open(atoi(id), tp->self) : -1;
		f->carrier[k] = fd < 0 ? NULL : bpf_program__attach_perf_event(k % 2 ? tp->ret : tp->entry[k / 2], fd);
		if (!f->carrier[k]) {
			if (fd >= 0)
				close(fd);
			event_remove(tp, fi, k);
			goto fail;
		}
		f->ev[k] = atoi(id);
	}
	return true;
fail:
	/* The events made before stay, with their programs: tlsprobe_free
	 * removes them.  The kernel refusing one refuses the others. */
	f->ev_failed = true;
	return false;
}

/* Probe file fi in process p; false when the kernel refused. */
static bool proc_attach(struct tlsprobe *tp, struct tls_proc *p, int fi)
{
	struct tls_file *f = &tp->files[fi];
	int slot = p->nfiles;

	for (int i = 0; i < p->nfiles; i++)
		if (p->files[i] == fi)
			return true;
	if (slot == MAX_PROC_LIBS || !file_events(tp, fi))
		return false;
	for (int k = 0; k < 2 * TLS_NFUNCS; k++) {
		int fd;

		if (!f->ev[k])
			continue;
		fd = perf_open(f->ev[k], p->pid);
		if (fd < 0) {
			for (int j = 0; j < k; j++)
				if (p->fds[slot][j])
					close(p->fds[slot][j] - 1);
			memset(p->fds[slot], 0, sizeof(p->fds[slot]));
			return false;
		}
		p->fds[slot][k] = fd + 1;
	}
	p->files[slot] = fi;
	p->nfiles++;
	return true;
}

static struct tls_proc *proc_get(struct tlsprobe *tp, pid_t pid, uint64_t start)
{
	struct tls_proc *p;

	for (int i = 0; i < tp->nprocs; i++) {
		p = &tp->procs[i];
		if (p->pid != pid)
			continue;
		if (p->start == start)
			return p;
		proc_release(p); /* the pid was reused */
		p->pid = pid;
		p->start = start;
		p->probed = time(NULL);
		return p;
	}
	if (tp->nprocs == SEAMS_MAX_TLS_PROCS)
		return NULL;
	p = &tp->procs[tp->nprocs++];
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->start = start;
	p->probed = time(NULL);
	return p;
}

/* The server's end is never decoded: its processes are not probed. */
static bool is_pg_server(pid_t pid)
{
	char path[64], comm[32] = "";
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	fp = fopen(path, "r");
	if (!fp)
		return false;
	if (!fgets(comm, sizeof(comm), fp))
		comm[0] = '\0';
	fclose(fp);
	return !strcmp(comm, "postgres\n");
}

/* Whether process pid (started at start) was let go; forget: it is to
 * be probed again (it exec'd, or went TLS). */
static bool let_go(struct tlsprobe *tp, pid_t pid, uint64_t start, bool forget)
{
	for (int i = 0; i < tp->ngone; i++) {
		if (tp->gone[i].pid != pid)
			continue;
		if (forget || tp->gone[i].start != start)
			tp->gone[i].pid = 0;
		return tp->gone[i].pid != 0;
	}
	return false;
}

static void remember_gone(struct tlsprobe *tp, pid_t pid, uint64_t start)
{
	let_go(tp, pid, start, true);
	tp->gone[tp->gone_next] = (struct gone){ pid, start };
	tp->gone_next = (tp->gone_next + 1) % MAX_GONE;
	if (tp->ngone < MAX_GONE)
		tp->ngone++;
}

/* Let go of p, probed but not using TLS for PostgreSQL; the caller
 * takes it out of tp->procs. */
static void proc_let_go(struct tlsprobe *tp, struct tls_proc *p)
{
	remember_gone(tp, p->pid, p->start);
	tp->released++;
	proc_release(p);
}

static struct tls_proc *proc_find(struct tlsprobe *tp, pid_t pid)
{
	for (int i = 0; i < tp->nprocs; i++)
		if (tp->procs[i].pid == pid)
			return &tp->procs[i];
	return NULL;
}

/* at_exec: before the process maps its libraries, so every libssl seen so
 * far is probed; false when its executable gives no reason to (the caller
 * looks again later).  Otherwise only what it maps. */
static bool probe(struct tlsprobe *tp, pid_t pid, bool at_exec)
{
	const struct seen_file *exe;
	char path[PATH_MAX + 64], line[PATH_MAX + 256];
	struct tls_proc *p;
	uint64_t start;
	bool failed = false;
	FILE *fp;
	int fi;

	if (pid == tp->self || (!tp->file_wide && is_pg_server(pid)))
		return true;
	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	exe = look(tp, path);
	if (at_exec && (!exe || !exe->loads_tls))
		return false;
	fi = exe ? exe->fi : -1;
	start = proc_start(pid);
	if (!start)
		return true; /* gone already */
	if (!at_exec && !tp->file_wide && let_go(tp, pid, start, false))
		return true;
	p = tp->file_wide ? &tp->all : proc_get(tp, pid, start);
	if (!p) {
		tp->unprobed++;
		return true;
	}
	p->seen = true;
	p->mapped = false;
	/* Statically linked OpenSSL, exported (node). */
	if (fi >= 0) {
		failed |= !proc_attach(tp, p, fi);
		p->mapped = true;
	}
	for (int i = 0; at_exec && i < tp->nsystem; i++)
		failed |= !proc_attach(tp, p, tp->system[i]);
	if (!at_exec) {
		snprintf(path, sizeof(path), "/proc/%d/maps", pid);
		fp = fopen(path, "r");
		while (fp && fgets(line, sizeof(line), fp)) {
			char *file = strchr(line, '/'), *base;

			if (!file)
				continue;
			file[strcspn(file, "\n")] = '\0';
			base = strrchr(file, '/') + 1;
			if (strncmp(base, "libssl.so.", 10))
				continue;
			/* Through the process's root: a container's own libssl. */
			snprintf(path, sizeof(path), "/proc/%d/root%s", pid, file);
			fi = file_index(tp, path);
			if (fi < 0)
				continue;
			failed |= !proc_attach(tp, p, fi);
			p->mapped = true;
		}
		if (fp)
			fclose(fp);
	}
	if (failed)
		tp->unprobed++;
	if (!tp->file_wide && !p->nfiles && p == &tp->procs[tp->nprocs - 1])
		tp->nprocs--; /* nothing to probe: keep the slot */
	return true;
}

static bool in_scope(struct tlsprobe *tp, pid_t pid)
{
	char path[64], line[4096];
	bool in = false;
	FILE *fp;

	if (!tp->nscopes)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	fp = fopen(path, "r");
	while (fp && !in && fgets(line, sizeof(line), fp)) {
		char *cg = line + 3;

		if (strncmp(line, "0::", 3))
			continue;
		cg[strcspn(cg, "\n")] = '\0';
		for (size_t i = 0; i < tp->nscopes && !in; i++) {
			size_t n = strlen(tp->scopes[i]);

			in = !strcmp(tp->scopes[i], "/") ||
			     (!strncmp(cg, tp->scopes[i], n) && (cg[n] == '/' || !cg[n]));
		}
	}
	if (fp)
		fclose(fp);
	return in;
}

static int pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

/* A process the last scan found too.  One probed at its exec that has
 * not mapped a TLS library yet is looked at again, so that one mapping it
 * late is not let go after GRACE_S. */
static void mark_seen(struct tlsprobe *tp, pid_t pid)
{
	for (int i = 0; i < tp->nprocs; i++) {
		if (tp->procs[i].pid != pid)
			continue;
		tp->procs[i].seen = true;
		if (!tp->procs[i].mapped)
			probe(tp, pid, false);
		return;
	}
}

static void scan(struct tlsprobe *tp, bool full)
{
	size_t npids = 0, cap = 0;
	pid_t *pids = NULL;
	struct dirent *d;
	DIR *dir;
	int kept = 0;

	for (int i = 0; i < tp->nprocs; i++)
		tp->procs[i].seen = false;
	dir = opendir("/proc");
	while (dir && (d = readdir(dir))) {
		char *end;
		long pid = strtol(d->d_name, &end, 10);

		if (*end || pid <= 0)
			continue;
		if (npids == cap) {
			pid_t *more = realloc(pids, (cap = cap ? 2 * cap : 512) * sizeof(*pids));

			/* Out of memory: the pids not kept are looked at again next time. */
			if (!more)
				cap = npids;
			else
				pids = more;
		}
		if (npids < cap)
			pids[npids++] = (pid_t)pid;
		if (!full && bsearch(&(pid_t){ (pid_t)pid }, tp->known, tp->nknown, sizeof(pid_t), pid_cmp)) {
			mark_seen(tp, (pid_t)pid);
			continue;
		}
		if (in_scope(tp, (pid_t)pid))
			probe(tp, (pid_t)pid, false);
	}
	if (dir)
		closedir(dir);
	qsort(pids, npids, sizeof(*pids), pid_cmp);
	free(tp->known);
	tp->known = pids;
	tp->nknown = npids;
	/* Processes that exited, or left the traced cgroups. */
	for (int i = 0; i < tp->nprocs; i++) {
		struct tls_proc *p = &tp->procs[i];

		if (!p->seen || (!p->mapped && time(NULL) - p->probed > GRACE_S)) {
			proc_release(p);
			continue;
		}
		if (!p->wanted && time(NULL) - p->probed > UNUSED_S) {
			proc_let_go(tp, p);
			continue;
		}
		if (kept != i)
			tp->procs[kept] = tp->procs[i];
		kept++;
	}
	tp->nprocs = kept;
}

/* What a traced process did (see struct exec_req). */
static void note(struct tlsprobe *tp, struct exec_req *r)
{
	struct tls_proc *p;

	switch (r->type) {
	case EV_EXEC:
		let_go(tp, r->pid, 0, true);
		if (probe(tp, r->pid, true))
			break;
		if (tp->ln < EXEC_QUEUE)
			tp->later[(tp->lhead + tp->ln++) % EXEC_QUEUE] = *r;
		else
			tp->unprobed++;
		break;
	case EV_PG_TLS:
		/* Probed already, or mapping the library it is about to use. */
		let_go(tp, r->pid, 0, true);
		p = proc_find(tp, r->pid);
		if (!p || !p->mapped)
			probe(tp, r->pid, false);
		p = proc_find(tp, r->pid);
		if (p)
			p->wanted = true;
		break;
	case EV_PG_PLAIN:
		p = proc_find(tp, r->pid);
		if (tp->file_wide || (p && p->wanted))
			break;
		if (!p) {
			/* Remembered once, not again at each of its connections. */
			uint64_t start = proc_start(r->pid);

			if (start && !let_go(tp, r->pid, start, false))
				remember_gone(tp, r->pid, start);
			break;
		}
		proc_let_go(tp, p);
		*p = tp->procs[--tp->nprocs];
		break;
	}
}

static void count_stats(const struct tlsprobe *tp, struct tlsprobe_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->procs = tp->nprocs;
	s->unprobed = tp->unprobed;
	s->released = tp->released;
	s->files = tp->all.nfiles;
	for (int f = 0; f < tp->all.nfiles; f++)
		for (int k = 0; k < 2 * TLS_NFUNCS; k++)
			s->links += tp->all.fds[f][k] != 0;
	for (int i = 0; i < tp->nprocs; i++)
		for (int f = 0; f < tp->procs[i].nfiles; f++)
			for (int k = 0; k < 2 * TLS_NFUNCS; k++)
				s->links += tp->procs[i].fds[f][k] != 0;
}

/* With w->mu held. */
static void publish(struct tlsprobe *tp)
{
	count_stats(tp, &tp->w.stats);
}

static void *work(void *arg)
{
	struct tlsprobe *tp = arg;
	struct worker *w = &tp->w;
	unsigned execs = 0;
	sigset_t all;

	/* Signals are the main thread's to take. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&w->mu);
	while (!w->stop) {
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		bool other = (tp->ln && tp->later[tp->lhead].due_ns <= now) || w->scan;
		struct exec_req r;

		/* Execs first, being urgent, but not all the time: under a
		 * storm of them, scans must still let go of exited processes. */
		if (w->qn && (!other || ++execs % 16)) {
			r = w->q[w->qhead];
			w->qhead = (w->qhead + 1) % EXEC_QUEUE;
			w->qn--;
			pthread_mutex_unlock(&w->mu);
			note(tp, &r);
		} else if (tp->ln && tp->later[tp->lhead].due_ns <= now) {
			r = tp->later[tp->lhead];
			tp->lhead = (tp->lhead + 1) % EXEC_QUEUE;
			tp->ln--;
			pthread_mutex_unlock(&w->mu);
			/* The pid may be another process's by now. */
			if (in_scope(tp, r.pid))
				probe(tp, r.pid, false);
		} else if (w->scan) {
			bool full = w->full;

			w->scan = w->full = false;
			pthread_mutex_unlock(&w->mu);
			scan(tp, full);
		} else {
			if (tp->ln) {
				uint64_t due = tp->later[tp->lhead].due_ns;
				struct timespec ts = { .tv_sec = (time_t)(due / 1000000000ULL),
						       .tv_nsec = (long)(due % 1000000000ULL) };

				pthread_cond_timedwait(&w->cv, &w->mu, &ts);
			} else {
				pthread_cond_wait(&w->cv, &w->mu);
			}
			continue;
		}
		pthread_mutex_lock(&w->mu);
		publish(tp);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* With w->mu held.  Started on first use, not before: the agent drops
 * capabilities once attached, which it can only do with one thread. */
static void wake(struct tlsprobe *tp)
{
	struct worker *w = &tp->w;

	if (!w->started)
		w->started = !pthread_create(&w->th, NULL, work, tp);
	pthread_cond_signal(&w->cv);
}

void tlsprobe_note(struct tlsprobe *tp, pid_t pid, uint32_t type)
{
	struct worker *w = tp ? &tp->w : NULL;

	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	if (w->qn == EXEC_QUEUE) {
		w->dropped++;
	} else if (type == EV_PG_TLS) {
		/* Its client is in its TLS handshake: ahead of any exec. */
		w->qhead = (w->qhead + EXEC_QUEUE - 1) % EXEC_QUEUE;
		w->qn++;
		w->q[w->qhead] = (struct exec_req){ pid, type, 0 };
		wake(tp);
	} else {
		w->q[(w->qhead + w->qn++) % EXEC_QUEUE] =
			(struct exec_req){ pid, type, now_ns(CLOCK_MONOTONIC) + LATER_NS };
		wake(tp);
	}
	pthread_mutex_unlock(&w->mu);
}

void tlsprobe_scan_later(struct tlsprobe *tp, bool full)
{
	if (!tp)
		return;
	pthread_mutex_lock(&tp->w.mu);
	tp->w.scan = true;
	tp->w.full |= full;
	wake(tp);
	pthread_mutex_unlock(&tp->w.mu);
}

void tlsprobe_scan(struct tlsprobe *tp, bool full)
{
	if (!tp)
		return;
	scan(tp, full);
	pthread_mutex_lock(&tp->w.mu);
	publish(tp);
	pthread_mutex_unlock(&tp->w.mu);
}

static const char *const tracefs_dirs[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };

/* The events of a seams that died without removing them go: those of a
 * group seams_PID_* whose PID is gone (in this PID namespace; a stale one
 * of another is left, and cannot clash: the suffix differs). */
static void remove_stale(struct tlsprobe *tp)
{
	char path[128], line[PATH_MAX + 128], *cmds = NULL;
	size_t len = 0;
	FILE *fp, *out = open_memstream(&cmds, &len);

	snprintf(path, sizeof(path), "%s/uprobe_events", tp->tracefs);
	fp = fopen(path, "r");
	/* Read them all first: removing while reading would skip some. */
	while (fp && out && fgets(line, sizeof(line), fp)) {
		int pid;

		/* "p:seams_PID_SUFFIX/NAME FILE:OFFSET" */
		if ((line[0] != 'p' && line[0] != 'r') || line[1] != ':' || strncmp(line + 2, "seams_", 6) ||
		    sscanf(line + 8, "%d_", &pid) != 1 || pid == tp->self || !kill(pid, 0) || errno != ESRCH)
			continue;
		line[strcspn(line, " ")] = '\0';
		fprintf(out, "-:%.100s\n", line + 2);
	}
	if (fp)
		fclose(fp);
	if (out)
		fclose(out);
	for (char *c = cmds, *nl; c && (nl = strchr(c, '\n')); c = nl + 1) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "%.*s\n", (int)(nl - c), c);
		tracefs_write(tp, cmd);
	}
	free(cmds);
}

/* tracefs, mounted if it is not, and left mounted, as perf and bpftrace
 * do: another seams may be using it by the time this one stops. */
static bool tracefs_open(struct tlsprobe *tp, char *err, size_t len)
{
	struct timespec ts;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < sizeof(tracefs_dirs) / sizeof(tracefs_dirs[0]); i++) {
			char path[128];

			snprintf(path, sizeof(path), "%s/uprobe_events", tracefs_dirs[i]);
			if (access(path, F_OK))
				continue;
			if (access(path, W_OK)) {
				snprintf(err, len, "%s is not writable (%s)", path, strerror(errno));
				return false;
			}
			snprintf(tp->tracefs, sizeof(tp->tracefs), "%s", tracefs_dirs[i]);
			/* Unique even to a seams restarted as the same PID (a
			 * container's PID 1): tracefs is the host's. */
			clock_gettime(CLOCK_REALTIME, &ts);
			snprintf(tp->group, sizeof(tp->group), "seams_%d_%lx", tp->self,
				 (unsigned long)(ts.tv_nsec ^ ts.tv_sec) & 0xffffff);
			remove_stale(tp);
			return true;
		}
		if (pass || mount("nodev", tracefs_dirs[0], "tracefs", 0, NULL)) {
			snprintf(err, len, "tracefs is not mounted at %s%s (%s)", tracefs_dirs[0],
				 pass ? "" : " and mounting it failed", strerror(errno));
			return false;
		}
	}
	return false;
}

/* A probe is an open perf event: 256 processes with 8 each are more than
 * the usual soft limit of 1024 descriptors. */
static void raise_nofile(void)
{
	struct rlimit r;

	if (!getrlimit(RLIMIT_NOFILE, &r) && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

struct tlsprobe *tlsprobe_new(struct bpf_program *const entry[TLS_NFUNCS], struct bpf_program *ret,
			      const char *const *scopes, size_t nscopes, bool file_wide, char *err, size_t len)
{
	struct tlsprobe *tp = calloc(1, sizeof(*tp));

	snprintf(err, len, "out of memory");
	if (!tp)
		return NULL;
	elf_version(EV_CURRENT);
	{
		pthread_condattr_t ca;

		/* Second looks are due on the monotonic clock. */
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&tp->w.cv, &ca);
		pthread_condattr_destroy(&ca);
		pthread_mutex_init(&tp->w.mu, NULL);
	}
	memcpy(tp->entry, entry, sizeof(tp->entry));
	tp->ret = ret;
	tp->self = getpid();
	tp->file_wide = file_wide;
	tp->all.pid = -1;
	raise_nofile();
	if (!tracefs_open(tp, err, len)) {
		tlsprobe_free(tp);
		return NULL;
	}
	tp->scopes = calloc(nscopes ? nscopes : 1, sizeof(*tp->scopes));
	if (!tp->scopes) {
		tlsprobe_free(tp);
		return NULL;
	}
	for (size_t i = 0; i < nscopes; i++) {
		tp->scopes[i] = strdup(scopes[i]);
		if (!tp->scopes[i]) {
			tlsprobe_free(tp);
			return NULL;
		}
		tp->nscopes++;
	}
	for (size_t d = 0; d < sizeof(lib_dirs) / sizeof(lib_dirs[0]); d++)
		for (size_t n = 0; n < sizeof(lib_names) / sizeof(lib_names[0]); n++) {
			char path[PATH_MAX];
			int fi, dup = 0;

			snprintf(path, sizeof(path), "%s/%s", lib_dirs[d], lib_names[n]);
			fi = file_index(tp, path);
			if (fi < 0 || !tp->files[fi].tls || tp->nsystem == (int)(sizeof(tp->system) / sizeof(tp->system[0])))
				continue;
			for (int i = 0; i < tp->nsystem; i++)
				dup |= tp->system[i] == fi;
			if (dup)
				continue;
			tp->system[tp->nsystem++] = fi;
			/* Per process, its events are made now all the same: made
			 * at the first exec, they took long enough for a script
			 * to connect first. */
			if (file_wide ? !proc_attach(tp, &tp->all, fi) : !file_events(tp, fi))
				tp->unprobed++;
		}
	return tp;
}

void tlsprobe_stats(struct tlsprobe *tp, struct tlsprobe_stats *s)
{
	memset(s, 0, sizeof(*s));
	if (!tp)
		return;
	pthread_mutex_lock(&tp->w.mu);
	*s = tp->w.stats;
	s->unprobed += tp->w.dropped;
	pthread_mutex_unlock(&tp->w.mu);
}

void tlsprobe_free(struct tlsprobe *tp)
{
	if (!tp)
		return;
	pthread_mutex_lock(&tp->w.mu);
	tp->w.stop = true;
	pthread_cond_signal(&tp->w.cv);
	pthread_mutex_unlock(&tp->w.mu);
	if (tp->w.started)
		pthread_join(tp->w.th, NULL);
	pthread_mutex_destroy(&tp->w.mu);
	pthread_cond_destroy(&tp->w.cv);
	for (int i = 0; i < tp->nprocs; i++)
		proc_release(&tp->procs[i]);
	proc_release(&tp->all);
	/* The last program off an event waits for the kernel's grace
	 * periods: a second or so per file, once. */
	for (int fi = 0; fi < tp->nfiles; fi++) {
		for (int k = 0; k < 2 * TLS_NFUNCS; k++) {
			bpf_link__destroy(tp->files[fi].carrier[k]);
			if (tp->files[fi].ev[k])
				event_remove(tp, fi, k);
		}
		if (tp->files[fi].fd >= 0)
			close(tp->files[fi].fd);
	}

	free(tp->known);
	for (size_t i = 0; i < tp->nscopes; i++)
		free(tp->scopes[i]);
	free(tp->scopes);
	free(tp);
}
