/* cgroup naming: ids come from bpf_get_current_cgroup_id(), which is the
 * inode of the cgroup's directory; the kernel turns it back into a path via
 * open_by_handle_at() on the cgroup2 mount (a kernfs file handle). */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgname.h"

#define FILEID_KERNFS 0xfe

int cg2_find_mount(char *buf, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096];
	int ret = -1;

	if (!f)
		return -1;
	while (ret && fgets(line, sizeof(line), f)) {
		/* id parent maj:min root mountpoint opts [optional...] - fstype src opts */
		char mnt[4096], fstype[64];
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(sep, " - %63s", fstype) != 1 || strcmp(fstype, "cgroup2"))
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		snprintf(buf, len, "%s", mnt);
		ret = 0;
	}
	fclose(f);
	return ret;
}

int cgnames_init(struct cgnames *c)
{
	struct stat st;

	memset(c, 0, sizeof(*c));
	c->mount_fd = -1;
	if (cg2_find_mount(c->mount, sizeof(c->mount)))
		return -1;
	c->mount_fd = open(c->mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->mount_fd < 0 || fstat(c->mount_fd, &st))
		return -1;
	c->root_id = st.st_ino;
	return 0;
}

void cgnames_free(struct cgnames *c)
{
	cgnames_evict(c);
	if (c->mount_fd >= 0)
		close(c->mount_fd);
}

static char *resolve(struct cgnames *c, uint64_t id)
{
	struct {
		struct file_handle fh;
		uint64_t id;
	} h = { .fh = { .handle_bytes = sizeof(uint64_t), .handle_type = FILEID_KERNFS } };
	char link[64], full[4096];
	size_t mlen = strlen(c->mount);
	ssize_t n;
	int fd;

	if (id == c->root_id)
		return strdup("/");
	memcpy(h.fh.f_handle, &id, sizeof(id));
	fd = open_by_handle_at(c->mount_fd, &h.fh, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, full, sizeof(full) - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	full[n] = '\0';
	if (strncmp(full, c->mount, mlen) || (full[mlen] && full[mlen] != '/'))
		return NULL;
	/* A directory name need not be UTF-8; the graph's strings must be. */
	utf8_clean(full + mlen);
	return strdup(full[mlen] ? full + mlen : "/");
}

/* A cgroup already gone is remembered as gone: looking again costs a
 * system call per event. */
static char gone;

const char *cgnames_path(struct cgnames *c, uint64_t id)
{
	char *p = u64map_get(&c->paths, id);

	if (p)
		return p == &gone ? NULL : p;
	p = resolve(c, id);
	if (u64map_put(&c->paths, id, p ? p : &gone)) {
		free(p);
		return NULL;
	}
	return p;
}

void cgnames_evict(struct cgnames *c)
{
	char *v;

	/* Forgetting every name is simplest and bounds the cache by what one
	 * eviction period sees; names are looked up again on next use. */
	u64map_for_each(&c->paths, i, v)
		if (v != &gone)
			free(v);
	u64map_free(&c->paths);
}

uint64_t cgnames_lookup(struct cgnames *c, const char *arg, char *path, size_t len)
{
	size_t mlen = strlen(c->mount);
	char full[8192];
	struct stat st;

	if (!strncmp(arg, c->mount, mlen) && (arg[mlen] == '/' || !arg[mlen]))
		arg += mlen;
	while (*arg == '/')
		arg++;
	snprintf(full, sizeof(full), "%s/%s", c->mount, arg);
	if (stat(full, &st) || !S_ISDIR(st.st_mode))
		return 0;
	snprintf(path, len, "/%s", arg);
	return st.st_ino;
}

size_t cgnames_resolve(struct cgnames *c, const char *const *args, size_t nargs, uint64_t *ids)
{
	char path[4096];
	size_t n = 0;

	for (size_t i = 0; i < nargs; i++) {
		uint64_t id = cgnames_lookup(c, args[i], path, sizeof(path));

		if (id)
			ids[n++] = id;
	}
	return n;
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n >= k && !memcmp(s + n - k, suffix, k);
}

/* A 64-hex container id inside s (docker-<id>.scope, cri-containerd-<id>.scope,
 * crio-<id>.scope, libpod-<id>.scope, or a bare <id> with cgroupfs). */
static const char *container_id(const char *s, size_t n)
{
	for (size_t i = 0; i + 64 <= n; i++) {
		size_t j = 0;

		if (i && s[i - 1] != '-')
			continue;
		while (j < 64 && isxdigit((unsigned char)s[i + j]) && !isupper((unsigned char)s[i + j]))
			j++;
		if (j == 64 && (i + 64 == n || s[i + 64] == '.'))
			return s + i;
	}
	return NULL;
}

void utf8_clean(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p) {
		/* The second byte's range rules out overlongs, surrogates and
		 * code points past U+10FFFF (RFC 3629). */
		unsigned char lo = 0x80, hi = 0xbf;
		size_t need, k = 1;

		if (*p < 0x80) {
			p++;
			continue;
		}
		if (*p >= 0xc2 && *p <= 0xdf) {
			need = 1;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			need = 2;
			lo = *p == 0xe0 ? 0xa0 : 0x80;
			hi = *p == 0xed ? 0x9f : 0xbf;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			need = 3;
			lo = *p == 0xf0 ? 0x90 : 0x80;
			hi = *p == 0xf4 ? 0x8f : 0xbf;
		} else {
			*p++ = '?';
			continue;
		}
		while (k <= need && p[k] >= lo && p[k] <= hi) {
			lo = 0x80;
			hi = 0xbf;
			k++;
		}
		if (k > need) {
			p += k;
			continue;
		}
		/* Cut by truncation, not garbled: keep the name it was. */
		if (!p[k]) {
			*p = '\0';
			return;
		}
		*p++ = '?';
	}
}

void cg_service_name(const char *path, const char *comm, char *out, size_t len)
{
	const char *last, *id;
	size_t n;

	if (!path || !strcmp(path, "/") || !*path) {
		snprintf(out, len, "%s", comm && *comm ? comm : "root");
		utf8_clean(out);
		if (!*out)
			snprintf(out, len, "root");
		return;
	}
	n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	last = path;
	for (size_t i = 0; i < n; i++)
		if (path[i] == '/')
			last = path + i + 1;
	n -= last - path;
	id = container_id(last, n);
	if (id) {
		snprintf(out, len, "%.12s", id);
		return;
	}
	if (ends_with(last, n, ".service"))
		n -= strlen(".service");
	else if (ends_with(last, n, ".scope"))
		n -= strlen(".scope");
	else if (ends_with(last, n, ".slice"))
		n -= strlen(".slice");
	snprintf(out, len, "%.*s", (int)n, last);
	utf8_clean(out);
}

/* /proc/net/unix gives the listening socket's inode; the process holding it
 * is found by its fd links. */
static unsigned long unix_listen_inode(const char *sockpath)
{
	FILE *f = fopen("/proc/net/unix", "r");
	char line[4096];
	unsigned long inode = 0;

	if (!f)
		return 0;
	while (!inode && fgets(line, sizeof(line), f)) {
		unsigned long flags, ino;
		unsigned int st;
		char path[4096];

		if (sscanf(line, "%*s %*s %*s %lx %*s %x %lu %4095s", &flags, &st, &ino, path) == 4 &&
		    (flags & 0x10000) && !strcmp(path, sockpath))
			inode = ino;
	}
	fclose(f);
	return inode;
}

static int pid_holding(unsigned long inode)
{
	char want[64], link[128], fddir[64], target[64];
	struct dirent *p, *fd;
	DIR *proc, *fds;
	int found = -1;

	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	proc = opendir("/proc");
	if (!proc)
		return -1;
	while (found < 0 && (p = readdir(proc))) {
		if (!isdigit((unsigned char)p->d_name[0]))
			continue;
		snprintf(fddir, sizeof(fddir), "/proc/%.20s/fd", p->d_name);
		fds = opendir(fddir);
		if (!fds)
			continue;
		while (found < 0 && (fd = readdir(fds))) {
			ssize_t n;

			snprintf(link, sizeof(link), "%s/%.20s", fddir, fd->d_name);
			n = readlink(link, target, sizeof(target) - 1);
			if (n > 0) {
				target[n] = '\0';
				if (!strcmp(target, want))
					found = atoi(p->d_name);
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

int cg_unix_listener(const char *sockpath, char *cgroup, size_t cglen, char *comm, size_t commlen)
{
	unsigned long inode = unix_listen_inode(sockpath);
	char path[64], line[4096];
	FILE *f;
	int pid;

	if (!inode || (pid = pid_holding(inode)) < 0)
		return -1;
	snprintf(cgroup, cglen, "/");
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	f = fopen(path, "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (!strncmp(line, "0::", 3)) {
				line[strcspn(line, "\n")] = '\0';
				snprintf(cgroup, cglen, "%s", line + 3);
			}
		fclose(f);
	}
	snprintf(comm, commlen, "unknown");
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	f = fopen(path, "r");
	if (f) {
		if (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(comm, commlen, "%s", line);
			utf8_clean(comm);
		}
		fclose(f);
	}
	return 0;
}
