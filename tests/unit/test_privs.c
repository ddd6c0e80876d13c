/* privs.c: after privs_drop a process holds only what it kept, in every
 * set, and can still do what the agent does after attach with the fds it
 * already has: update and read BPF maps, read a BPF ring buffer, mmap a
 * map.  Each case runs in a forked child (drops cannot be undone) and
 * needs root; as another user the cases are skipped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "cgname.h"
#include "privs.h"

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#define CAP_BPF     39
#endif

/* In the child: report and exit non-zero; the parent's assert shows it. */
#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "line %d: %s: ", __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                         \
			fprintf(stderr, " (errno %s)\n", strerror(errno));   \
			_exit(1);                                             \
		}                                                             \
	} while (0)

struct status {
	uint64_t inh, prm, eff, bnd, amb;
	int nnp;
};

static struct status read_status(void)
{
	struct status s = { .nnp = -1 };
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];

	if (!f)
		return s;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;

		if (sscanf(line, "CapInh: %llx", &v) == 1) s.inh = v;
		else if (sscanf(line, "CapPrm: %llx", &v) == 1) s.prm = v;
		else if (sscanf(line, "CapEff: %llx", &v) == 1) s.eff = v;
		else if (sscanf(line, "CapBnd: %llx", &v) == 1) s.bnd = v;
		else if (sscanf(line, "CapAmb: %llx", &v) == 1) s.amb = v;
		else sscanf(line, "NoNewPrivs: %d", &s.nnp);
	}
	fclose(f);
	return s;
}

#define BIT(c) (1ULL << (c))

static void run_child(void (*fn)(void *), void *arg)
{
	int st = 0;
	pid_t pid;

	if (geteuid() != 0)
		skip();
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* A cgroup and a process of another user, to show the kept capabilities
 * still do the two jobs they are kept for. */
struct fixture {
	struct cgnames names;
	char cgdir[4096 + 256];
	char cgrel[256];
	uint64_t cgid;      /* 0: no cgroup2 here */
	pid_t other;        /* a process running as nobody */
};

static int setup(void **state)
{
	static struct fixture fx;
	struct stat st;

	memset(&fx, 0, sizeof(fx));
	*state = &fx;
	if (geteuid() != 0)
		return 0;
	if (cgnames_init(&fx.names) == 0) {
		snprintf(fx.cgrel, sizeof(fx.cgrel), "/seams-unit-privs-%d", getpid());
		snprintf(fx.cgdir, sizeof(fx.cgdir), "%s%s", fx.names.mount, fx.cgrel);
		if (mkdir(fx.cgdir, 0755) == 0 && stat(fx.cgdir, &st) == 0)
			fx.cgid = st.st_ino;
	}
	fx.other = fork();
	if (fx.other == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(1);
		execlp("sleep", "sleep", "60", (char *)NULL);
		_exit(1);
	}
	/* Until it has exec'd, it is still ours. */
	for (int i = 0; i < 200; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d", fx.other);
		if (stat(path, &st) == 0 && st.st_uid == 65534)
			break;
		usleep(10000);
	}
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	if (fx->other > 0) {
		kill(fx->other, SIGKILL);
		waitpid(fx->other, NULL, 0);
	}
	if (fx->cgid)
		rmdir(fx->cgdir);
	if (fx->names.mount_fd > 0)
		cgnames_free(&fx->names);
	return 0;
}

/* Can this process list /proc/PID/fd of another user's process? */
static bool reads_other_fds(pid_t pid)
{
	char path[64];
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return false;
	closedir(d);
	return true;
}

static void child_agent_keep(void *arg)
{
	struct fixture *fx = arg;
	uint64_t kept = BIT(CAP_DAC_READ_SEARCH) | BIT(CAP_SYS_PTRACE);
	char err[256] = "";
	struct status s;

	CHECK(privs_drop(privs_agent_keep, privs_agent_nkeep, err, sizeof(err)) == 0, "%s", err);
	s = read_status();
	CHECK(s.eff == kept, "CapEff %llx", (unsigned long long)s.eff);
	CHECK(s.prm == kept, "CapPrm %llx", (unsigned long long)s.prm);
	CHECK(s.bnd == kept, "CapBnd %llx", (unsigned long long)s.bnd);
	CHECK(s.inh == 0 && s.amb == 0, "CapInh %llx CapAmb %llx", (unsigned long long)s.inh,
	      (unsigned long long)s.amb);
	CHECK(s.nnp == 1, "NoNewPrivs %d", s.nnp);
	CHECK(!(s.eff & (BIT(CAP_BPF) | BIT(CAP_PERFMON) | BIT(CAP_SYS_ADMIN) | BIT(CAP_NET_ADMIN))),
	      "CapEff %llx", (unsigned long long)s.eff);
	/* What they are kept for still works. */
	if (fx->cgid) {
		const char *p = cgnames_path(&fx->names, fx->cgid);

		CHECK(p && !strcmp(p, fx->cgrel), "cgroup %s named %s", fx->cgrel, p ? p : "(null)");
	}
	if (fx->other > 0)
		CHECK(reads_other_fds(fx->other), "reading /proc/%d/fd", fx->other);
	/* And what root could do without them does not. */
	CHECK(setuid(1000) == -1 && errno == EPERM, "setuid still works");
	CHECK(prctl(PR_CAPBSET_READ, CAP_SETPCAP, 0, 0, 0) == 0, "CAP_SETPCAP is in the bounding set");
}

static void test_agent_keep(void **state)
{
	run_child(child_agent_keep, *state);
}

static void child_keep_none(void *arg)
{
	struct fixture *fx = arg;
	char err[256] = "";
	struct status s;

	CHECK(privs_drop(NULL, 0, err, sizeof(err)) == 0, "%s", err);
	s = read_status();
	CHECK(s.eff == 0 && s.prm == 0 && s.bnd == 0 && s.inh == 0 && s.amb == 0 && s.nnp == 1,
	      "eff %llx prm %llx bnd %llx nnp %d", (unsigned long long)s.eff, (unsigned long long)s.prm,
	      (unsigned long long)s.bnd, s.nnp);
	/* Without them the agent could not name cgroups or Unix-socket
	 * listeners: the reason the agent keeps them. */
	if (fx->cgid)
		CHECK(cgnames_path(&fx->names, fx->cgid) == NULL, "named a cgroup without CAP_DAC_READ_SEARCH");
	if (fx->other > 0)
		CHECK(!reads_other_fds(fx->other), "read another user's fds without CAP_SYS_PTRACE");
}

static void test_keep_none(void **state)
{
	run_child(child_keep_none, *state);
}

/* Kept but not held: stays absent, and is no error. */
static void child_keep_unheld(void *arg)
{
	const int first[] = { CAP_SYS_PTRACE };
	const int later[] = { CAP_SYS_PTRACE, CAP_BPF };
	char err[256] = "";
	struct status s;

	CHECK(privs_drop(first, 1, err, sizeof(err)) == 0, "%s", err);
	CHECK(privs_drop(later, 2, err, sizeof(err)) == 0, "%s", err);
	s = read_status();
	CHECK(s.eff == BIT(CAP_SYS_PTRACE) && s.prm == BIT(CAP_SYS_PTRACE), "eff %llx prm %llx",
	      (unsigned long long)s.eff, (unsigned long long)s.prm);
}

static void test_keep_unheld(void **state)
{
	run_child(child_keep_unheld, *state);
}

/* Without CAP_SETPCAP the bounding set cannot shrink: privs_drop says so
 * (1) but still empties the permitted and effective sets. */
static void child_no_setpcap(void *arg)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	char err[256] = "";
	struct status s;

	CHECK(syscall(SYS_capget, &h, d) == 0, "capget");
	d[0].permitted &= ~(1u << CAP_SETPCAP);
	d[0].effective &= ~(1u << CAP_SETPCAP);
	CHECK(syscall(SYS_capset, &h, d) == 0, "capset");
	CHECK(privs_drop(privs_agent_keep, privs_agent_nkeep, err, sizeof(err)) == 1, "%s", err);
	CHECK(strstr(err, "bounding set") != NULL, "message: %s", err);
	s = read_status();
	CHECK(s.eff == (BIT(CAP_DAC_READ_SEARCH) | BIT(CAP_SYS_PTRACE)) && s.prm == s.eff && s.nnp == 1,
	      "eff %llx prm %llx", (unsigned long long)s.eff, (unsigned long long)s.prm);
	CHECK(s.bnd & BIT(CAP_BPF), "bounding set shrank without CAP_SETPCAP: %llx",
	      (unsigned long long)s.bnd);
}

static void test_no_setpcap(void **state)
{
	run_child(child_no_setpcap, *state);
}

static void *idle_thread(void *arg)
{
	pause();
	return NULL;
}

/* A second thread would keep its capabilities: refused. */
static void child_threads(void *arg)
{
	pthread_t t;
	char err[256] = "";
	struct status s;

	CHECK(pthread_create(&t, NULL, idle_thread, NULL) == 0, "pthread_create");
	CHECK(privs_drop(privs_agent_keep, privs_agent_nkeep, err, sizeof(err)) == -1, "dropped with 2 threads");
	CHECK(strstr(err, "2 threads") != NULL, "message: %s", err);
	s = read_status();
	CHECK(s.eff & BIT(CAP_SYS_ADMIN), "refused, yet dropped something");
}

static void test_threads_refused(void **state)
{
	run_child(child_threads, *state);
}

static void test_bad_keep(void **state)
{
	const int bad[] = { CAP_SYS_PTRACE, 200 };
	char err[256] = "";

	/* Checked before anything is dropped, so no child needed. */
	assert_int_equal(privs_drop(bad, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "capability 200"));
}

/* --- BPF after the drop ------------------------------------------------------
 * The agent loads and attaches as root, then drops CAP_BPF, CAP_PERFMON and
 * CAP_SYS_ADMIN and goes on updating its cgroup allow-list, reading
 * counters, the ring buffer and the mmapped per-CPU rings through fds it
 * already has.  A socket filter stands in for seams' programs: on each
 * datagram it reads config[0], counts in counter[0] and writes the config
 * value into a ring buffer, so an update made after the drop is seen to
 * reach the kernel side. */

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define MOV_REG(d, s)     INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV_IMM(d, i)     INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define ADD_IMM(d, i)     INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define ST_W(d, o, i)     INSN(BPF_ST | BPF_MEM | BPF_W, d, 0, o, i)
#define STX_DW(d, s, o)   INSN(BPF_STX | BPF_MEM | BPF_DW, d, s, o, 0)
#define LDX_DW(d, s, o)   INSN(BPF_LDX | BPF_MEM | BPF_DW, d, s, o, 0)
#define XADD_DW(d, s, o)  INSN(BPF_STX | BPF_ATOMIC | BPF_DW, d, s, o, BPF_ADD)
#define LD_MAP(d, fd)     INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), INSN(0, 0, 0, 0, 0)
#define CALL(f)           INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define JEQ_IMM(d, i, o)  INSN(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, i)
#define EXIT()            INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

struct bpf_fds {
	int config, counter, ring, mm, prog;
	int sock[2];
};

static int load_filter(struct bpf_fds *b)
{
	struct bpf_map_create_opts mmo = { .sz = sizeof(mmo), .map_flags = BPF_F_MMAPABLE };
	b->config = bpf_map_create(BPF_MAP_TYPE_ARRAY, "cfg", 4, 8, 1, NULL);
	b->counter = bpf_map_create(BPF_MAP_TYPE_ARRAY, "cnt", 4, 8, 1, NULL);
	b->ring = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "ring", 0, 0, 4096, NULL);
	b->mm = bpf_map_create(BPF_MAP_TYPE_ARRAY, "mm", 4, 4096, 2, &mmo);
	if (b->config < 0 || b->counter < 0 || b->ring < 0 || b->mm < 0)
		return -1;
	struct bpf_insn prog[] = {
		/* 0 */ ST_W(BPF_REG_10, -4, 0),
		/* 1 */ MOV_REG(BPF_REG_2, BPF_REG_10),
		/* 2 */ ADD_IMM(BPF_REG_2, -4),
		/* 3 */ LD_MAP(BPF_REG_1, b->config),
		/* 5 */ CALL(BPF_FUNC_map_lookup_elem),
		/* 6 */ JEQ_IMM(BPF_REG_0, 0, 17),
		/* 7 */ LDX_DW(BPF_REG_7, BPF_REG_0, 0),
		/* 8 */ MOV_REG(BPF_REG_2, BPF_REG_10),
		/* 9 */ ADD_IMM(BPF_REG_2, -4),
		/* 10 */ LD_MAP(BPF_REG_1, b->counter),
		/* 12 */ CALL(BPF_FUNC_map_lookup_elem),
		/* 13 */ JEQ_IMM(BPF_REG_0, 0, 10),
		/* 14 */ MOV_IMM(BPF_REG_1, 1),
		/* 15 */ XADD_DW(BPF_REG_0, BPF_REG_1, 0),
		/* 16 */ STX_DW(BPF_REG_10, BPF_REG_7, -16),
		/* 17 */ LD_MAP(BPF_REG_1, b->ring),
		/* 19 */ MOV_REG(BPF_REG_2, BPF_REG_10),
		/* 20 */ ADD_IMM(BPF_REG_2, -16),
		/* 21 */ MOV_IMM(BPF_REG_3, 8),
		/* 22 */ MOV_IMM(BPF_REG_4, 0),
		/* 23 */ CALL(BPF_FUNC_ringbuf_output),
		/* 24 */ MOV_IMM(BPF_REG_0, 0),
		/* 25 */ EXIT(),
	};
	char log[4096] = "";
	LIBBPF_OPTS(bpf_prog_load_opts, po, .log_buf = log, .log_size = sizeof(log), .log_level = 1);

	b->prog = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, "privs_test", "GPL", prog,
				sizeof(prog) / sizeof(prog[0]), &po);
	if (b->prog < 0) {
		fprintf(stderr, "prog load: %s\n%s\n", strerror(errno), log);
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, b->sock) ||
	    setsockopt(b->sock[0], SOL_SOCKET, SO_ATTACH_BPF, &b->prog, sizeof(b->prog)))
		return -1;
	return 0;
}

static uint64_t ring_value;
static int ring_records;

static int on_record(void *ctx, void *data, size_t size)
{
	if (size == sizeof(ring_value)) {
		memcpy(&ring_value, data, size);
		ring_records++;
	}
	return 0;
}

static void child_bpf_after_drop(void *arg)
{
	struct bpf_fds b;
	uint32_t key = 0;
	uint64_t v = 0, cfg = 0x5ea45;
	char err[256] = "", unpriv[8] = "";
	struct ring_buffer *rb;
	int fd, created;
	void *mm;

	libbpf_set_print(NULL);
	CHECK(load_filter(&b) == 0, "loading the test program as root");
	CHECK(privs_drop(privs_agent_keep, privs_agent_nkeep, err, sizeof(err)) == 0, "%s", err);
	CHECK(!(read_status().eff & (BIT(CAP_BPF) | BIT(CAP_SYS_ADMIN) | BIT(CAP_PERFMON))), "still privileged");

	/* The caps are really gone: with unprivileged BPF disabled (Debian's
	 * default) neither a new map nor a new program can be made. */
	fd = open("/proc/sys/kernel/unprivileged_bpf_disabled", O_RDONLY);
	if (fd >= 0) {
		CHECK(read(fd, unpriv, sizeof(unpriv) - 1) > 0, "reading unprivileged_bpf_disabled");
		close(fd);
	}
	created = bpf_map_create(BPF_MAP_TYPE_HASH, "late", 8, 1, 16, NULL);
	if (unpriv[0] != '0')
		CHECK(created < 0 && errno == EPERM, "created a map after the drop");

	/* Update (the cgroup allow-list) and read (the counters). */
	CHECK(bpf_map_update_elem(b.config, &key, &cfg, BPF_ANY) == 0, "updating a map after the drop");
	CHECK(bpf_map_lookup_elem(b.config, &key, &v) == 0 && v == cfg, "reading it back");
	/* The ring buffer, set up only now: mmap after the drop. */
	rb = ring_buffer__new(b.ring, on_record, NULL, NULL);
	CHECK(rb != NULL, "ring_buffer__new after the drop");
	CHECK(write(b.sock[1], "x", 1) == 1, "sending a datagram");
	CHECK(ring_buffer__poll(rb, 1000) >= 0, "polling the ring");
	CHECK(ring_records == 1 && ring_value == cfg, "records %d value %llx", ring_records,
	      (unsigned long long)ring_value);
	CHECK(bpf_map_lookup_elem(b.counter, &key, &v) == 0 && v == 1, "counter %llu", (unsigned long long)v);
	ring_buffer__free(rb);
	/* An mmapable array (seams' per-CPU PostgreSQL rings), mapped now. */
	mm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, b.mm, 0);
	CHECK(mm != MAP_FAILED, "mmap of an array map after the drop");
	memcpy((char *)mm + 4096, "seams", 6);
	{
		char page[4096];

		key = 1;
		CHECK(bpf_map_lookup_elem(b.mm, &key, page) == 0 && !strcmp(page, "seams"), "mmapped write not seen");
	}
}

static void test_bpf_after_drop(void **state)
{
	run_child(child_bpf_after_drop, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agent_keep),
		cmocka_unit_test(test_keep_none),
		cmocka_unit_test(test_keep_unheld),
		cmocka_unit_test(test_no_setpcap),
		cmocka_unit_test(test_threads_refused),
		cmocka_unit_test(test_bad_keep),
		cmocka_unit_test(test_bpf_after_drop),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
