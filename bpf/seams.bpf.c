// SPDX-License-Identifier: GPL-2.0
/* seams kernel side: TCP connect/accept/close with the owning process and
 * cgroup, connections already open when the capture began (found on their
 * first read or write), and the client side of PostgreSQL connections over
 * TCP or Unix sockets.  Tracepoints and raw tracepoints only: kprobes and
 * fentry are unavailable on the hosts seams targets. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "seams.h"
#include "sock.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the collector before load. */
const volatile __u32 self_tgid = 0;
const volatile bool filter_cgroups = false;
const volatile __u16 pg_ports[SEAMS_MAX_PG_PORTS] = { 5432 };

/* x86_64 syscall numbers: raw sys_enter/sys_exit see every syscall, so the
 * first thing done is to drop the ones seams does not care about. */
#define NR_read     0
#define NR_write    1
#define NR_close    3
#define NR_readv    19
#define NR_writev   20
#define NR_dup2     33
#define NR_accept   43
#define NR_sendto   44
#define NR_recvfrom 45
#define NR_sendmsg  46
#define NR_recvmsg  47
#define NR_accept4  288
#define NR_dup3     292

/* What an fd of a process is, so each fd is classified once.  A candidate
 * is a client socket whose first write tells whether it speaks PostgreSQL. */
enum fd_kind { FD_OTHER = 1, FD_TCP, FD_CANDIDATE, FD_PG };

struct owner {
	__u64 cgroup_id;
	__u64 ts_ns;
	__u32 tgid;
	__u32 pid;
	char comm[SEAMS_COMM_LEN];
};

/* Byte counters at the time tracking began: a connection opened before the
 * capture reports only what moved during it. */
struct tracked {
	__u64 start_ns;
	__u64 bytes_sent0;
	__u64 bytes_received0;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SEAMS_RING_SIZE);
} events SEC(".maps");

static __always_inline __u64 wakeup_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > SEAMS_RING_SIZE / 4 ?
		       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* connect() in progress: the owner is known only in the caller's context,
 * the 4-tuple only once established (in softirq). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct owner);
} connecting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tracked);
} socks SEC(".maps");

/* The socket behind an fd is kept so the hot path never walks the fd table
 * twice. */
struct fd_info {
	__u64 sock;
	__u8 kind;      /* enum fd_kind */
	__u8 pad[7];
};

/* (tgid << 32 | fd) -> struct fd_info.  LRU: exits and exec leave entries. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct fd_info);
} fds SEC(".maps");

/* --cgroup: the cgroup ids whose processes (and descendants) are traced. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SEAMS_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, __u8);
} cgroup_allow SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += n;
}

static __always_inline bool traced_task(void)
{
	if ((bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return false;
	if (!filter_cgroups)
		return true;
	/* Level 0 is the root; past the task's own depth the helper returns 0. */
	for (int level = 1; level < SEAMS_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		if (!id)
			break;
		if (bpf_map_lookup_elem(&cgroup_allow, &id))
			return true;
	}
	return false;
}

static __always_inline void current_owner(struct owner *o)
{
	__u64 id = bpf_get_current_pid_tgid();

	o->tgid = id >> 32;
	o->pid = (__u32)id;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline void track(struct sock *sk, __u64 now)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct tracked t = {
		.start_ns = now,
		.bytes_sent0 = BPF_CORE_READ(tp, bytes_acked),
		.bytes_received0 = BPF_CORE_READ(tp, bytes_received),
	};
	__u64 key = (__u64)sk;

	if (bpf_map_update_elem(&socks, &key, &t, BPF_NOEXIST) == -E2BIG)
		count(CNT_SOCK_FULL);
}

/* Emit a connection event; o == NULL means the current task owns it. */
static __always_inline void emit(__u32 type, struct sock *sk, const struct owner *o)
{
	struct conn_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(CNT_LOST_EVENTS);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	if (o) {
		e->tgid = o->tgid;
		e->pid = o->pid;
		e->cgroup_id = o->cgroup_id;
		__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	} else if (type != EV_CLOSE) {
		struct owner cur;

		current_owner(&cur);
		e->tgid = cur.tgid;
		e->pid = cur.pid;
		e->cgroup_id = cur.cgroup_id;
		__builtin_memcpy(e->comm, cur.comm, sizeof(e->comm));
	}
	e->type = type;
	e->ts_ns = bpf_ktime_get_ns();
	e->sock = (__u64)sk;
	sock_tuple(sk, e->laddr, e->raddr, &e->lport, &e->rport);
	if (type == EV_CLOSE) {
		struct tcp_sock *tp = (struct tcp_sock *)sk;
		__u64 key = (__u64)sk;
		struct tracked *t = bpf_map_lookup_elem(&socks, &key);

		if (t) {
			e->start_ns = t->start_ns;
			e->bytes_sent = BPF_CORE_READ(tp, bytes_acked) - t->bytes_sent0;
			e->bytes_received = BPF_CORE_READ(tp, bytes_received) - t->bytes_received0;
		}
	}
	bpf_ringbuf_submit(e, wakeup_flags());
}

#include "pgframe.bpf.h"

SEC("tracepoint/sock/inet_sock_set_state")
int on_sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct sock *sk = (struct sock *)ctx->skaddr;
	__u64 key = (__u64)sk;
	struct owner *o;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->newstate == TCP_SYN_SENT) {
		/* Runs in connect(): the only moment the caller is current. */
		struct owner cur;

		if (!traced_task())
			return 0;
		current_owner(&cur);
		bpf_map_update_elem(&connecting, &key, &cur, BPF_ANY);
		return 0;
	}
	if (ctx->oldstate == TCP_SYN_SENT) {
		o = bpf_map_lookup_elem(&connecting, &key);
		if (!o)
			return 0;
		if (ctx->newstate == TCP_ESTABLISHED) {
			emit(EV_CONNECT, sk, o);
			track(sk, o->ts_ns);
		} else {
			emit(EV_CONNECT_FAIL, sk, o);
		}
		bpf_map_delete_elem(&connecting, &key);
		return 0;
	}
	if (ctx->newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&pgconns, &key);
		if (bpf_map_lookup_elem(&socks, &key)) {
			emit(EV_CLOSE, sk, NULL);
			bpf_map_delete_elem(&socks, &key);
		}
	}
	return 0;
}

static __always_inline void forget_fd(__u64 tgid, __u64 fd)
{
	__u64 key = tgid << 32 | (__u32)fd;

	bpf_map_delete_elem(&fds, &key);
}

/* close() of a PostgreSQL client fd: a Unix socket has no state-change
 * tracepoint, so its end is reported here. */
static __always_inline void close_fd(__u64 tgid, __u64 fd)
{
	__u64 key = tgid << 32 | (__u32)fd, skey;
	struct fd_info *info = bpf_map_lookup_elem(&fds, &key);
	struct sock *sk;

	if (info && info->kind == FD_PG && info->sock) {
		sk = (struct sock *)info->sock;
		skey = info->sock;
		if (bpf_map_delete_elem(&pgconns, &skey) == 0 &&
		    BPF_CORE_READ(sk, __sk_common.skc_family) == AF_UNIX)
			emit(EV_CLOSE, sk, NULL);
	}
	bpf_map_delete_elem(&fds, &key);
}

static __always_inline bool is_pg_port(__u16 port)
{
	for (int i = 0; i < SEAMS_MAX_PG_PORTS; i++)
		if (pg_ports[i] && pg_ports[i] == port)
			return true;
	return false;
}

/* First read or write on an fd: remember what it is, and report a TCP
 * connection that was open before tracking began. */
static __always_inline __u8 classify_fd(__u64 tgid, int fd, __u64 *sock)
{
	__u64 key = tgid << 32 | (__u32)fd;
	struct fd_info info = { .kind = FD_OTHER }, *known;
	__u8 kind = FD_OTHER;
	struct sock *sk;
	__u64 skey;

	known = bpf_map_lookup_elem(&fds, &key);
	if (known) {
		*sock = known->sock;
		return known->kind;
	}
	if (!traced_task())
		goto out;
	sk = fd_to_sock(fd);
	if (!sk)
		goto out;
	info.sock = (__u64)sk;
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_UNIX) {
		/* Only the client end of a Unix stream has no address of its own. */
		if (BPF_CORE_READ(sk, sk_type) == SOCK_STREAM &&
		    !BPF_CORE_READ((struct unix_sock *)sk, addr))
			kind = FD_CANDIDATE;
		goto out;
	}
	if (!sock_is_tcp(sk))
		goto out;
	skey = (__u64)sk;
	if (!bpf_map_lookup_elem(&socks, &skey)) {
		__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);

		if (state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT) {
			emit(EV_SEEN, sk, NULL);
			track(sk, bpf_ktime_get_ns());
		}
	}
	if (is_pg_port(bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport))))
		kind = FD_PG;
	else if (is_pg_port(BPF_CORE_READ(sk, __sk_common.skc_num)))
		kind = FD_TCP; /* the server's end: its client is traced instead */
	else
		kind = FD_CANDIDATE;
out:
	info.kind = kind;
	*sock = info.sock;
	bpf_map_update_elem(&fds, &key, &info, BPF_ANY);
	return kind;
}

static __always_inline bool is_write(__u32 nr)
{
	return nr == NR_write || nr == NR_writev || nr == NR_sendto || nr == NR_sendmsg;
}

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	__u64 id = bpf_get_current_pid_tgid(), tgid = id >> 32;
	__u32 nr = ctx->args[1];
	struct inflight in = {}, *slot;
	__u64 sock = 0;
	__u8 kind;

	switch (nr) {
	case NR_read: case NR_write: case NR_readv: case NR_writev:
	case NR_sendto: case NR_recvfrom: case NR_sendmsg: case NR_recvmsg:
		in.fd = BPF_CORE_READ(regs, di);
		kind = classify_fd(tgid, (int)in.fd, &sock);
		if (kind != FD_PG && !(kind == FD_CANDIDATE && is_write(nr)))
			break;
		in.nr = nr;
		in.kind = kind;
		in.arg = BPF_CORE_READ(regs, si);
		in.count = BPF_CORE_READ(regs, dx);
		in.sock = sock;
		slot = bpf_task_storage_get(&inflights, bpf_get_current_task_btf(), 0,
					    BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (slot)
			*slot = in;
		break;
	case NR_close:
		close_fd(tgid, BPF_CORE_READ(regs, di));
		break;
	case NR_dup2: case NR_dup3:
		forget_fd(tgid, BPF_CORE_READ(regs, si));
		break;
	}
	return 0;
}

static __always_inline void on_accept(long ret)
{
	__u64 tgid, key;
	struct sock *sk;
	struct fd_info info = { .kind = FD_TCP };

	if (ret < 0 || !traced_task())
		return;
	sk = fd_to_sock((int)ret);
	if (!sk || !sock_is_tcp(sk))
		return;
	emit(EV_ACCEPT, sk, NULL);
	track(sk, bpf_ktime_get_ns());
	tgid = bpf_get_current_pid_tgid() >> 32;
	key = tgid << 32 | (__u32)ret;
	info.sock = (__u64)sk;
	bpf_map_update_elem(&fds, &key, &info, BPF_ANY);
}

/* Where the data of a syscall starts: the buffer, or the first iovec. */
static __always_inline __u64 first_buf(const struct inflight *in, __u64 *iov, __u64 *iovcnt)
{
	struct iovec v = {};

	*iov = 0;
	*iovcnt = 0;
	switch (in->nr) {
	case NR_readv: case NR_writev:
		*iov = in->arg;
		*iovcnt = in->count;
		break;
	case NR_sendmsg: case NR_recvmsg: {
		struct user_msghdr m = {};

		bpf_probe_read_user(&m, sizeof(m), (void *)in->arg);
		*iov = (__u64)m.msg_iov;
		*iovcnt = m.msg_iovlen;
		break;
	}
	default:
		return in->arg;
	}
	bpf_probe_read_user(&v, sizeof(v), (void *)*iov);
	return (__u64)v.iov_base;
}

/* A write on a candidate socket starting with a startup packet or a Query,
 * Parse or Bind whole in the write: a PostgreSQL client.  Backends never
 * send those types, so the server's end is not mistaken for a client. */
static __always_inline bool looks_pg(__u64 buf, long ret)
{
	__u8 b[8] = {};
	__u32 mlen;

	if (ret < 5 || bpf_probe_read_user(b, sizeof(b), (void *)buf))
		return false;
	if (ret >= 8 && looks_untyped(b))
		return true;
	mlen = be32(b + 1);
	return (b[0] == 'Q' || b[0] == 'P' || b[0] == 'B') && mlen >= 5 && mlen < ret;
}

static __always_inline void pg_open(struct sock *sk, bool synced)
{
	struct pg_open_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	struct owner cur;

	if (!e) {
		count(CNT_LOST_EVENTS);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	current_owner(&cur);
	e->ts_ns = cur.ts_ns;
	e->cgroup_id = cur.cgroup_id;
	e->tgid = cur.tgid;
	e->pid = cur.pid;
	__builtin_memcpy(e->comm, cur.comm, sizeof(e->comm));
	e->type = EV_PG_OPEN;
	e->sock = (__u64)sk;
	e->synced = synced;
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (e->family == AF_UNIX) {
		struct sock *peer = BPF_CORE_READ((struct unix_sock *)sk, peer);
		struct unix_address *addr = peer ? BPF_CORE_READ((struct unix_sock *)peer, addr) : NULL;

		if (addr)
			bpf_probe_read_kernel_str(e->path, sizeof(e->path), addr->name[0].sun_path);
	} else {
		e->family = AF_INET6;
		sock_tuple(sk, e->laddr, e->raddr, &e->lport, &e->rport);
	}
	bpf_ringbuf_submit(e, wakeup_flags());
}

static __noinline void frame_iov(struct frame_ctx *c, __u64 iov, __u64 iovcnt, __u64 total)
{
	for (int i = 0; i < PG_MAX_IOV; i++) {
		struct iovec v = {};

		if (i >= iovcnt || !total)
			break;
		bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(v)));
		c->buf = (__u64)v.iov_base;
		c->n = v.iov_len < total ? v.iov_len : total;
		c->off = 0;
		frame_chunk(c);
		total -= c->n;
	}
	if (total)
		add_lost(c, total);
}

static __always_inline void pg_exit(__u64 tgid, const struct inflight *in, long ret)
{
	__u32 dir = is_write(in->nr) ? PG_DIR_FRONTEND : PG_DIR_BACKEND, zero = 0;
	__u64 iov, iovcnt, buf = first_buf(in, &iov, &iovcnt);
	__u64 key = in->sock;
	struct pg_scratch *scr;
	struct pg_state *ps;
	struct frame_ctx c = {};

	if (in->kind == FD_CANDIDATE) {
		__u64 fkey = tgid << 32 | in->fd;
		struct fd_info info = { .sock = in->sock, .kind = looks_pg(buf, ret) ? FD_PG : FD_OTHER };

		bpf_map_update_elem(&fds, &fkey, &info, BPF_ANY);
		if (info.kind != FD_PG)
			return;
	}
	ps = bpf_map_lookup_elem(&pgconns, &key);
	if (!ps) {
		struct pg_state fresh = {};
		__u8 b[8] = {};

		if (bpf_map_update_elem(&pgconns, &key, &fresh, BPF_NOEXIST) == -E2BIG)
			count(CNT_PG_FULL);
		ps = bpf_map_lookup_elem(&pgconns, &key);
		if (!ps)
			return;
		bpf_probe_read_user(b, sizeof(b), (void *)buf);
		pg_open((struct sock *)in->sock, dir == PG_DIR_FRONTEND && ret >= 8 && looks_untyped(b));
	}
	if (ps->encrypted) {
		count_n(CNT_PG_SKIPPED, ret);
		return;
	}
	scr = bpf_map_lookup_elem(&pgscratch, &zero);
	if (!scr)
		return;
	c.scr = scr;
	c.ps = ps;
	c.st = &ps->d[dir & 1];
	c.dir = dir;
	scr->ev.type = EV_PG_DATA;
	scr->ev.sock = key;
	scr->ev.dir = dir;
	ev_reset(&scr->ev);
	scr->ev.segs[0].skipped = c.st->pend_skipped;
	scr->ev.segs[0].lost = c.st->pend_lost;
	c.st->pend_skipped = c.st->pend_lost = 0;
	if (iov) {
		frame_iov(&c, iov, iovcnt, ret);
	} else {
		c.buf = buf;
		c.n = ret;
		frame_chunk(&c);
	}
	if (scr->ev.len) {
		pg_flush(scr, c.st);
		return;
	}
	/* Only gaps: carry them to the next event rather than send them alone. */
	for (int i = 0; i < PG_SEGS_MAX; i++) {
		if (i >= scr->ev.nsegs)
			break;
		c.st->pend_skipped += scr->ev.segs[i].skipped;
		c.st->pend_lost += scr->ev.segs[i].lost;
	}
}

SEC("raw_tracepoint/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long ret = (long)ctx->args[1];
	long nr = BPF_CORE_READ(regs, orig_ax);
	struct inflight *in;

	switch (nr) {
	case NR_accept: case NR_accept4:
		on_accept(ret);
		break;
	case NR_read: case NR_write: case NR_readv: case NR_writev:
	case NR_sendto: case NR_recvfrom: case NR_sendmsg: case NR_recvmsg:
		in = bpf_task_storage_get(&inflights, bpf_get_current_task_btf(), 0, 0);
		if (!in || !in->kind)
			break;
		if (ret > 0 && in->sock)
			pg_exit(bpf_get_current_pid_tgid() >> 32, in, ret);
		in->kind = 0;
		break;
	}
	return 0;
}
