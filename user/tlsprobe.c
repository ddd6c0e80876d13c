/* OpenSSL probes per process (see tlsprobe.h).  A uprobe attached for one
 * process puts breakpoints only in that process's memory, and a library
 * the process maps later gets them as it is mapped: a process is probed
 * right after its exec, before it loads libssl, on every libssl file seen
 * so far.  A periodic scan catches what that misses: processes already
 * running at the start, forked without exec, or loading a libssl from
 * elsewhere: every 2 s the processes that are new since the last scan,
 * every 30 s all of them again (a process already seen that dlopens a
 * libssl later is probed within 30 s). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "seams.h"
#include "tlsprobe.h"

#define MAX_FILES     128  /* distinct executables and libraries looked at */
#define MAX_PROC_LIBS 16   /* TLS libraries probed per process, or file-wide */
/* A process probed at exec that has not mapped a TLS library by then is
 * let go (its slot is needed more elsewhere); a later dlopen is caught by
 * the scan. */
#define GRACE_S       10

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
	char path[PATH_MAX];         /* in seams' own mount namespace, or "" */
};

struct tls_proc {
	pid_t pid;
	uint64_t start;              /* start time: a reused pid is another process */
	bool seen;                   /* found by the current scan */
	bool mapped;                 /* a TLS file is in its maps */
	time_t probed;               /* when first probed */
	int files[MAX_PROC_LIBS];    /* indexes in tp->files */
	int nfiles;
	struct bpf_link *links[MAX_PROC_LIBS][2 * TLS_NFUNCS];
};

/* Detaching a uprobe waits for RCU grace periods, about 100 ms each: one
 * after another, a process's eight probes took most of a second and
 * stalled the event loop.  Reaper threads detach them in the background,
 * together, so their waits overlap. */
#define REAPERS 16

struct reaper {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct bpf_link **q;
	size_t n, cap;
	bool stop;
	pthread_t th[REAPERS];
	int nth;
};

static void *reap(void *arg)
{
	struct reaper *r = arg;

	for (;;) {
		struct bpf_link *link;

		pthread_mutex_lock(&r->mu);
		while (!r->n && !r->stop)
			pthread_cond_wait(&r->cv, &r->mu);
		if (!r->n) {
			pthread_mutex_unlock(&r->mu);
			return NULL;
		}
		link = r->q[--r->n];
		pthread_mutex_unlock(&r->mu);
		bpf_link__destroy(link);
	}
}

static void reaper_init(struct reaper *r)
{
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
}

static void detach(struct reaper *r, struct bpf_link *link)
{
	if (!link)
		return;
	/* Started on first use, not before: the agent drops capabilities
	 * once attached, which it can only do with one thread running. */
	for (; r->nth < REAPERS; r->nth++)
		if (pthread_create(&r->th[r->nth], NULL, reap, r))
			break;
	pthread_mutex_lock(&r->mu);
	if (r->nth && r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 256;
		struct bpf_link **q = realloc(r->q, cap * sizeof(*q));

		if (q) {
			r->q = q;
			r->cap = cap;
		}
	}
	if (r->nth && r->n < r->cap) {
		r->q[r->n++] = link;
		pthread_cond_signal(&r->cv);
		link = NULL;
	}
	pthread_mutex_unlock(&r->mu);
	bpf_link__destroy(link); /* no thread or no memory: here, then */
}

/* Wait until every link handed over is detached. */
static void reaper_stop(struct reaper *r)
{
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (int i = 0; i < r->nth; i++)
		pthread_join(r->th[i], NULL);
	free(r->q);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}

struct tlsprobe {
	struct reaper reaper;
	struct bpf_program *entry[TLS_NFUNCS], *ret;
	char **scopes;
	size_t nscopes;
	struct tls_file files[MAX_FILES];
	int nfiles;
	int system[8];               /* the distribution's libssl files */
	int nsystem;
	struct tls_proc procs[SEAMS_MAX_TLS_PROCS];
	int nprocs;
	bool file_wide;              /* probes for every process (pid -1) */
	struct tls_proc all;         /* those probes */
	uint64_t unprobed;
	pid_t self;
	/* The pids the last scan found, sorted: a scan between full ones
	 * looks only at the others, since reading every process's cgroup,
	 * stat and maps every 2 s cost the collector more than decoding. */
	pid_t *known;
	size_t nknown;
};

/* The file offsets of the SSL_* functions a file exports. */
static void elf_offsets(const char *path, struct tls_file *f)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	Elf_Scn *scn = NULL;
	Elf *elf;

	if (fd < 0)
		return;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	while (elf && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
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

/* The file at path (through /proc/PID/... links too), looked at once. */
static int file_index(struct tlsprobe *tp, const char *path)
{
	struct tls_file *f;
	struct stat st;

	if (stat(path, &st) || !S_ISREG(st.st_mode))
		return -1;
	for (int i = 0; i < tp->nfiles; i++)
		if (tp->files[i].dev == st.st_dev && tp->files[i].ino == st.st_ino)
			return i;
	if (tp->nfiles == MAX_FILES)
		return -1;
	f = &tp->files[tp->nfiles];
	memset(f, 0, sizeof(*f));
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	elf_offsets(path, f);
	return tp->nfiles++;
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

static void proc_release(struct tlsprobe *tp, struct tls_proc *p)
{
	for (int i = 0; i < p->nfiles; i++)
		for (int k = 0; k < 2 * TLS_NFUNCS; k++)
			detach(&tp->reaper, p->links[i][k]);
	memset(p, 0, sizeof(*p));
}

/* Probe file fi in process p; false when the kernel refused. */
static bool proc_attach(struct tlsprobe *tp, struct tls_proc *p, int fi, const char *path)
{
	struct tls_file *f = &tp->files[fi];
	int slot = p->nfiles;

	for (int i = 0; i < p->nfiles; i++)
		if (p->files[i] == fi)
			return true;
	if (slot == MAX_PROC_LIBS)
		return false;
	for (int k = 0; k < TLS_NFUNCS; k++) {
		LIBBPF_OPTS(bpf_uprobe_opts, in);
		LIBBPF_OPTS(bpf_uprobe_opts, out, .retprobe = true);

		if (!f->off[k])
			continue;
		p->links[slot][2 * k] = bpf_program__attach_uprobe_opts(tp->entry[k], p->pid, path, f->off[k], &in);
		p->links[slot][2 * k + 1] = bpf_program__attach_uprobe_opts(tp->ret, p->pid, path, f->off[k], &out);
		if (!p->links[slot][2 * k] || !p->links[slot][2 * k + 1]) {
			for (int j = 0; j <= 2 * k + 1; j++) {
				detach(&tp->reaper, p->links[slot][j]);
				p->links[slot][j] = NULL;
			}
			return false;
		}
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
		proc_release(tp, p); /* the pid was reused */
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

/* at_exec: before the process maps its libraries, so every libssl seen so
 * far is probed; later, only what it maps. */
static void probe(struct tlsprobe *tp, pid_t pid, bool at_exec)
{
	char path[PATH_MAX + 64], line[PATH_MAX + 256];
	struct tls_proc *p;
	uint64_t start;
	bool failed = false;
	FILE *fp;
	int fi;

	if (pid == tp->self || (!tp->file_wide && is_pg_server(pid)))
		return;
	start = proc_start(pid);
	if (!start)
		return; /* gone already */
	p = tp->file_wide ? &tp->all : proc_get(tp, pid, start);
	if (!p) {
		tp->unprobed++;
		return;
	}
	p->seen = true;
	p->mapped = false;
	/* Statically linked OpenSSL, exported (node). */
	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	fi = file_index(tp, path);
	if (fi >= 0 && tp->files[fi].tls) {
		failed |= !proc_attach(tp, p, fi, path);
		p->mapped = true;
	}
	for (int i = 0; at_exec && i < tp->nsystem; i++)
		failed |= !proc_attach(tp, p, tp->system[i], tp->files[tp->system[i]].path);
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
			if (fi < 0 || !tp->files[fi].tls)
				continue;
			failed |= !proc_attach(tp, p, fi, path);
			p->mapped = true;
		}
		if (fp)
			fclose(fp);
	}
	if (failed)
		tp->unprobed++;
	if (!tp->file_wide && !p->nfiles && p == &tp->procs[tp->nprocs - 1])
		tp->nprocs--; /* nothing to probe: keep the slot */
}

void tlsprobe_pid(struct tlsprobe *tp, pid_t pid)
{
	if (tp)
		probe(tp, pid, true);
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

static void mark_seen(struct tlsprobe *tp, pid_t pid)
{
	for (int i = 0; i < tp->nprocs; i++)
		if (tp->procs[i].pid == pid)
			tp->procs[i].seen = true;
}

void tlsprobe_scan(struct tlsprobe *tp, bool full)
{
	size_t npids = 0, cap = 0;
	pid_t *pids = NULL;
	struct dirent *d;
	DIR *dir;
	int kept = 0;

	if (!tp)
		return;
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
			proc_release(tp, &tp->procs[i]);
			continue;
		}
		if (kept != i)
			tp->procs[kept] = tp->procs[i];
		kept++;
	}
	tp->nprocs = kept;
}

struct tlsprobe *tlsprobe_new(struct bpf_program *const entry[TLS_NFUNCS], struct bpf_program *ret,
			      const char *const *scopes, size_t nscopes, bool file_wide)
{
	struct tlsprobe *tp = calloc(1, sizeof(*tp));

	if (!tp)
		return NULL;
	elf_version(EV_CURRENT);
	reaper_init(&tp->reaper);
	memcpy(tp->entry, entry, sizeof(tp->entry));
	tp->ret = ret;
	tp->self = getpid();
	tp->file_wide = file_wide;
	tp->all.pid = -1;
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
			snprintf(tp->files[fi].path, sizeof(tp->files[fi].path), "%s", path);
			tp->system[tp->nsystem++] = fi;
			if (file_wide && !proc_attach(tp, &tp->all, fi, path))
				tp->unprobed++;
		}
	return tp;
}

void tlsprobe_stats(const struct tlsprobe *tp, struct tlsprobe_stats *s)
{
	memset(s, 0, sizeof(*s));
	if (!tp)
		return;
	s->procs = tp->nprocs;
	s->unprobed = tp->unprobed;
	s->files = tp->all.nfiles;
	for (int f = 0; f < tp->all.nfiles; f++)
		for (int k = 0; k < 2 * TLS_NFUNCS; k++)
			s->links += tp->all.links[f][k] != NULL;
	for (int i = 0; i < tp->nprocs; i++)
		for (int f = 0; f < tp->procs[i].nfiles; f++)
			for (int k = 0; k < 2 * TLS_NFUNCS; k++)
				s->links += tp->procs[i].links[f][k] != NULL;
}

void tlsprobe_free(struct tlsprobe *tp)
{
	if (!tp)
		return;
	for (int i = 0; i < tp->nprocs; i++)
		proc_release(tp, &tp->procs[i]);
	proc_release(tp, &tp->all);
	reaper_stop(&tp->reaper);
	free(tp->known);
	for (size_t i = 0; i < tp->nscopes; i++)
		free(tp->scopes[i]);
	free(tp->scopes);
	free(tp);
}
