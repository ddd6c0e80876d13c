// SPDX-License-Identifier: GPL-2.0
/* seams kernel side: TCP connect/accept/close with the owning process and
 * cgroup, connections already open when the capture began (found on their
 * first send or receive), and the client side of PostgreSQL connections over
 * TCP or Unix sockets.  Tracepoints only: kprobes and fentry are unavailable
 * on the hosts seams targets, and BTF ones need no tracefs.
 *
 * No syscall tracepoint is used.  Enabling any of them puts every thread on
 * the host on the syscall slow path, which costs more than all of seams'
 * own work; sock_send_length and sock_recv_length fire only for socket I/O,
 * and the syscall's own registers still say where the bytes are. */
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
const volatile bool tls_probing = true;

/* Set by the collector once every program is attached, cleared before any
 * is detached: the three hooks attach one after another, and a connection
 * seen by one and not yet by another would show only one of its ends. */
volatile __u32 capturing = 0;

/* x86_64 numbers of the syscalls whose buffers the framer can follow. */
#define NR_read     0
#define NR_write    1
#define NR_readv    19
#define NR_writev   20
#define NR_sendto   44
#define NR_recvfrom 45
#define NR_sendmsg  46
#define NR_recvmsg  47

#define MSG_OOB     1
#define MSG_PEEK    2

/* What a socket is, decided on its first send or receive.  A candidate is a
 * client socket whose first send tells whether it speaks PostgreSQL. */
enum sock_kind {
	SK_OTHER = 1,  /* untraced, or a Unix socket that is not PostgreSQL */
	SK_TCP,        /* traced TCP, not a PostgreSQL client: exchanges only */
	SK_CANDIDATE,  /* its first send tells */
	SK_PG,
};

struct owner {
	__u64 cgroup_id;
	__u64 ts_ns;
	__u32 tgid;
	__u32 pid;
	char comm[SEAMS_COMM_LEN];
};

/* Byte counters at the time tracking began: a connection opened before the
 * capture reports only what moved during it.  An accepted connection is
 * tracked from its handshake (in softirq, owner unknown) and announced on
 * its first send or receive, in its owner's context. */
struct tracked {
	__u64 start_ns;
	__u64 bytes_sent0;
	__u64 bytes_received0;
	__u8 passive;    /* accepted here, not yet announced */
	__u8 announced;  /* the collector knows it: report its close */
	__u8 pad[6];
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

/* Tell the collector's TLS probes about the current process (type: EV_EXEC,
 * EV_PG_TLS or EV_PG_PLAIN): it acts on them ahead of the rest, and at once
 * but for EV_PG_PLAIN, which a client opening a connection per request
 * would otherwise turn into a wakeup per request. */
static __always_inline void tls_note(__u32 type)
{
	/* Reserved, not built on the stack: the framer's calls use most of it. */
	struct tls_note *e;

	if (!tls_probing || !type)
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_LOST_EVENTS);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->sock = 0;
	e->type = type;
	e->tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_ringbuf_submit(e, type == EV_PG_PLAIN ? wakeup_flags() : BPF_RB_FORCE_WAKEUP);
}

#include "pgframe.bpf.h"

/* Per-socket state, freed by the kernel with the socket: found without a
 * hash lookup or a lock on every send and receive.  What every call reads
 * comes first: the kernel puts it in the cache line that the lookup itself
 * reads (after the map pointer), so a socket seams does not frame costs one
 * cache miss less on each call. */
struct sockinfo {
	__u32 exchanges; /* sends that followed a receive, or came first */
	__u8 kind;       /* enum sock_kind */
	__u8 pg_opened;  /* EV_PG_OPEN sent */
	__u8 last_dir;   /* 1 + the direction of the last send or receive */
	__u8 server;     /* the server's end of a connection accepted during the capture */
	__u8 tls;        /* its plaintext comes from the TLS library: leave its bytes out */
	__u8 quiet;      /* PostgreSQL's own end, its client traced here: nothing to do */
	__u8 pad[6];
	struct pg_state pg;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sockinfo);
} sockinfo SEC(".maps");

/* The state of the traced TCP sockets that got here first, one per slot
 * by the connection's hash: found by a load and a compare, where the
 * socket-storage helper is a call and a chain of loads, on every send and
 * receive.  The others keep it in socket storage.  A socket lets go of
 * its slot at its close, before its memory can be reused, and its state
 * moves there; Unix sockets have no such moment and no slot. */
#define SOCK_SLOTS 1024
struct sock_slot {
	__u64 sk;
	struct sockinfo si;
} __attribute__((aligned(64)));
static struct sock_slot sock_slots[SOCK_SLOTS];

static __always_inline struct sock_slot *slot_of(const struct sock *sk)
{
	return &sock_slots[sk->__sk_common.skc_hash & (SOCK_SLOTS - 1)];
}

/* A TCP socket's state, or NULL. */
static __always_inline struct sockinfo *tcp_info(struct sock *sk)
{
	struct sock_slot *s = slot_of(sk);

	if (s->sk == (__u64)sk)
		return &s->si;
	return bpf_sk_storage_get(&sockinfo, sk, 0, 0);
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

static __always_inline void track(struct sock *sk, __u64 now, bool passive)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct tracked t = {
		.start_ns = now,
		.bytes_sent0 = BPF_CORE_READ(tp, bytes_acked),
		.bytes_received0 = BPF_CORE_READ(tp, bytes_received),
		.passive = passive,
		.announced = !passive,
	};
	__u64 key = (__u64)sk;

	if (bpf_map_update_elem(&socks, &key, &t, BPF_NOEXIST) == -E2BIG)
		count(CNT_SOCK_FULL);
}

/* Emit a connection event; o == NULL means the current task owns it. */
static __always_inline void emit(__u32 type, struct sock *sk, const struct owner *o, __u64 ts)
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
	e->ts_ns = ts ? ts : bpf_ktime_get_ns();
	e->sock = (__u64)sk;
	sock_tuple(sk, e->laddr, e->raddr, &e->lport, &e->rport);
	if (type == EV_SEEN)
		e->peer_closed = BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE_WAIT;
	if (type == EV_CLOSE) {
		struct tcp_sock *tp = (struct tcp_sock *)sk;
		__u64 key = (__u64)sk;
		struct tracked *t = bpf_map_lookup_elem(&socks, &key);
		struct sockinfo *si = tcp_info(sk);

		if (si)
			e->exchanges = si->exchanges;

		if (t) {
			e->start_ns = t->start_ns;
			e->bytes_sent = BPF_CORE_READ(tp, bytes_acked) - t->bytes_sent0;
			e->bytes_received = BPF_CORE_READ(tp, bytes_received) - t->bytes_received0;
		}
	}
	bpf_ringbuf_submit(e, wakeup_flags());
}

static __always_inline void tls_close(__u64 sk);

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_sock_state, struct sock *sk, int oldstate, int newstate)
{
	__u64 key = (__u64)sk;
	struct tracked *t;
	struct owner *o;

	if (!capturing || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_SYN_SENT) {
		/* Runs in connect(): the only moment the caller is current. */
		struct owner cur;

		if (!traced_task())
			return 0;
		current_owner(&cur);
		bpf_map_update_elem(&connecting, &key, &cur, BPF_ANY);
		return 0;
	}
	if (oldstate == TCP_SYN_SENT) {
		o = bpf_map_lookup_elem(&connecting, &key);
		if (!o)
			return 0;
		if (newstate == TCP_ESTABLISHED) {
			emit(EV_CONNECT, sk, o, 0);
			track(sk, o->ts_ns, false);
		} else {
			emit(EV_CONNECT_FAIL, sk, o, 0);
		}
		bpf_map_delete_elem(&connecting, &key);
		return 0;
	}
	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		/* The handshake of an accepted connection, in softirq: the
		 * owner is known on its first send or receive. */
		track(sk, bpf_ktime_get_ns(), true);
		return 0;
	}
	if ((oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1) ||
	    (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK)) {
		/* close() or shutdown() by the owner, on a connection open since
		 * before the capture: seen now if it moved no byte since. */
		if (!bpf_map_lookup_elem(&socks, &key) && traced_task()) {
			emit(EV_SEEN, sk, NULL, 0);
			track(sk, bpf_ktime_get_ns(), false);
		}
		return 0;
	}
	if (newstate == TCP_CLOSE) {
		struct sock_slot *s = slot_of(sk);

		t = bpf_map_lookup_elem(&socks, &key);
		if (t) {
			if (t->announced)
				emit(EV_CLOSE, sk, NULL, 0);
			bpf_map_delete_elem(&socks, &key);
			tls_close(key);
		}
		/* Reads may follow still (data queued before a reset): the
		 * state moves to socket storage.  The slot is zeroed for its
		 * next socket, which may find it before it has set it up. */
		if (s->sk == key) {
			struct sockinfo *si = bpf_sk_storage_get(&sockinfo, sk, 0,
								 BPF_SK_STORAGE_GET_F_CREATE);

			if (si)
				*si = s->si;
			__builtin_memset(&s->si, 0, sizeof(s->si));
			s->sk = 0;
		}
	}
	return 0;
}

static __always_inline bool is_pg_port(__u16 port)
{
	for (int i = 0; i < SEAMS_MAX_PG_PORTS; i++)
		if (pg_ports[i] && pg_ports[i] == port)
			return true;
	return false;
}

/* The first send or receive of data on a TCP socket: announce a connection accepted
 * during the capture or open since before it, and say what it is. */
static __always_inline __u8 classify_tcp(struct sock *sk, __u8 *server)
{
	__u64 key = (__u64)sk;
	struct tracked *t = bpf_map_lookup_elem(&socks, &key);

	if (!t) {
		__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);

		if (state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT) {
			emit(EV_SEEN, sk, NULL, 0);
			track(sk, bpf_ktime_get_ns(), false);
		}
	} else if (t->passive) {
		t->passive = 0;
		t->announced = 1;
		/* PostgreSQL's own end is left out: a backend calls nothing, and
		 * a record per statement would cost the most traffic there is. */
		*server = !is_pg_port(BPF_CORE_READ(sk, __sk_common.skc_num));
		emit(EV_ACCEPT, sk, NULL, t->start_ns);
	}
	if (is_pg_port(bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport))))
		return SK_PG;
	if (is_pg_port(BPF_CORE_READ(sk, __sk_common.skc_num)))
		return SK_TCP; /* the server's end: its client is traced instead */
	return SK_CANDIDATE;
}

/* Is the other end of this connection on this host?  IPv4 sockets, and
 * IPv4-mapped ones, hold the IPv4 addresses; an IPv6 socket's IPv4 fields
 * hold a placeholder. */
static __always_inline bool peer_local(const struct sock *sk)
{
	const struct in6_addr *d = &sk->__sk_common.skc_v6_daddr, *l = &sk->__sk_common.skc_v6_rcv_saddr;
	__be32 v4;

	if (sk->__sk_common.skc_family == AF_INET6 &&
	    (d->in6_u.u6_addr32[0] || d->in6_u.u6_addr32[1] ||
	     d->in6_u.u6_addr32[2] != bpf_htonl(0xffff)))
		return (d->in6_u.u6_addr32[0] == l->in6_u.u6_addr32[0] &&
			d->in6_u.u6_addr32[1] == l->in6_u.u6_addr32[1] &&
			d->in6_u.u6_addr32[2] == l->in6_u.u6_addr32[2] &&
			d->in6_u.u6_addr32[3] == l->in6_u.u6_addr32[3]) ||
		       (!d->in6_u.u6_addr32[0] && !d->in6_u.u6_addr32[1] && !d->in6_u.u6_addr32[2] &&
			d->in6_u.u6_addr32[3] == bpf_htonl(1));
	v4 = sk->__sk_common.skc_daddr;
	return v4 == sk->__sk_common.skc_rcv_saddr || (bpf_ntohl(v4) >> 24) == 127;
}

static __always_inline struct sockinfo *classify(struct sock *sk, __u16 family)
{
	struct sockinfo *si;
	__u8 kind = SK_OTHER, server = 0;

	if (traced_task())
		kind = family == AF_UNIX ? SK_CANDIDATE : classify_tcp(sk, &server);
	if (family != AF_UNIX && kind != SK_OTHER) {
		struct sock_slot *s = slot_of(sk);

		if (!__sync_val_compare_and_swap(&s->sk, 0, (__u64)sk)) {
			si = &s->si;
			goto found;
		}
		/* Nothing is lost, each call costs a helper more: said so, for a
		 * host with far more busy sockets than slots. */
		count(CNT_NO_SLOT);
	}
	si = bpf_sk_storage_get(&sockinfo, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!si) {
		count(CNT_PG_FULL);
		return NULL;
	}
found:
	si->kind = kind;
	si->server = server;
	return si;
}

/* The inbound request a thread is serving (sock 0: none), and the calls it
 * made so far: the record it becomes, so that sending it is one copy. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct nest_event);
} nesting SEC(".maps");

/* Threads with a request open, host-wide: while none is, a client's send
 * or receive needs no lookup (a host of database clients pays nothing).
 * A thread that exits mid-request leaves it high, which costs only that. */
__s64 nest_open = 0;

/* Only the slots used travel: a request that called nobody, the most
 * common, is 40 bytes, not 296. */
static __always_inline void nest_emit(struct nest_event *st, __u64 now)
{
	__u32 n = st->ncalls;

	if (n > SEAMS_NEST_CALLS)
		n = SEAMS_NEST_CALLS;
	st->ts_ns = now;
	st->type = EV_NEST;
	if (bpf_ringbuf_output(&events, st, offsetof(struct nest_event, calls) + n * sizeof(struct nest_call),
			       wakeup_flags()))
		count(CNT_LOST_EVENTS);
}

/* A traced TCP connection changed direction: dir is the new one.  Per
 * thread: a thread serving one request at a time (thread pools, forking
 * servers) nests exactly; an event loop interleaving requests is flagged
 * NEST_OVERLAP instead of attributed. */
static __always_inline void nest_turn(struct sock *sk, bool server, __u32 dir)
{
	struct nest_call *c = NULL;
	struct nest_event *st;
	__u64 key = (__u64)sk, now;

	if (server) {
		bool recv = dir == PG_DIR_BACKEND;

		st = bpf_task_storage_get(&nesting, bpf_get_current_task_btf(), 0,
					  recv ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
		if (!st) {
			if (recv)
				count(CNT_NEST_FULL);
			return;
		}
		now = bpf_ktime_get_ns();
		if (!recv) {
			if (st->sock == key) {
				nest_emit(st, now);
				st->sock = 0;
				__sync_fetch_and_add(&nest_open, -1);
			} else if (st->sock) {
				st->flags |= NEST_OVERLAP;
			}
			return;
		}
		/* A request arrives while another is open. */
		if (st->sock) {
			st->flags |= NEST_OVERLAP;
			nest_emit(st, now);
		} else {
			__sync_fetch_and_add(&nest_open, 1);
		}
		st->flags = st->sock ? NEST_OVERLAP : 0;
		st->sock = key;
		st->start_ns = now;
		st->ncalls = 0;
		st->overflow = 0;
		return;
	}
	/* A thread that never served a request has no state: nothing here. */
	if (nest_open <= 0)
		return;
	st = bpf_task_storage_get(&nesting, bpf_get_current_task_btf(), 0, 0);
	if (!st || !st->sock)
		return;
	for (int i = 0; i < SEAMS_NEST_CALLS; i++) {
		if (i >= st->ncalls)
			break;
		if (st->calls[i].sock == key) {
			c = &st->calls[i];
			break;
		}
	}
	now = bpf_ktime_get_ns();
	if (dir == PG_DIR_BACKEND) {
		/* A reply; a receive for a call sent before the request is not one. */
		if (c && c->pending) {
			c->busy_ns += now - c->start_ns;
			c->pending = 0;
		}
		return;
	}
	if (!c) {
		__u32 n = st->ncalls;

		if (n >= SEAMS_NEST_CALLS) {
			st->overflow++;
			return;
		}
		c = &st->calls[n];
		c->sock = key;
		c->busy_ns = 0;
		c->calls = 0;
		st->ncalls = n + 1;
	}
	c->start_ns = now;
	c->pending = 1;
	c->calls++;
}

static __always_inline bool ps_encrypted(const struct sockinfo *si)
{
	return si->pg.d[PG_DIR_FRONTEND].encrypted || si->tls;
}

/* The syscall that moved the bytes, from its own registers: the tracepoint
 * knows the socket and the length, not the buffer. */
struct io_args {
	__u64 arg;      /* buffer, iovec array or msghdr */
	__u64 count;    /* iovcnt for readv/writev */
	__u32 nr;
	bool known;     /* a syscall the framer can follow (read is number 0) */
};

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/* Where the current task's user registers sit, from its stack page: found
 * once with bpf_task_pt_regs, a helper call that cost every framed send
 * and receive (on_send 499 -> 483 ns, on_recv 324 -> 314 ns per run on
 * average with loads at the known offset instead; tests/bench/bpf_cost.sh).
 * The offset depends only on the kernel's build. */
__u64 regs_off = 0;

static __always_inline void syscall_args(struct io_args *in)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct pt_regs *regs;

	if (!regs_off)
		regs_off = (__u64)bpf_task_pt_regs(t) - (__u64)t->stack;
	regs = bpf_rdonly_cast((void *)((__u64)t->stack + regs_off), bpf_core_type_id_kernel(struct pt_regs));
	in->nr = regs->orig_ax;
	in->arg = regs->si;
	in->count = regs->dx;
}

/* Where the data of a syscall starts: the buffer, or the first iovec. */
static __always_inline __u64 first_buf(const struct io_args *in, __u64 *iov, __u64 *iovcnt)
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

/* A send on a candidate socket starting with a startup packet or a Query,
 * Parse or Bind whole in the send: a PostgreSQL client.  Backends never
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

static __always_inline void pg_open(struct sock *sk, __u64 key, bool synced)
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
	e->sock = key;
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

static __always_inline void frame_iov(struct pg_scratch *scr, struct pg_state *ps, __u64 iov,
				      __u64 iovcnt, __u64 total, __u32 dir)
{
	for (int i = 0; i < PG_MAX_IOV; i++) {
		struct iovec v = {};
		__u64 n;

		if (i >= iovcnt || !total)
			break;
		bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(v)));
		n = v.iov_len < total ? v.iov_len : total;
		frame_chunk(scr, ps, (__u64)v.iov_base, n, dir);
		total -= n;
	}
	if (total)
		pg_gap(scr, ps, total, 1);
}

/* ret bytes of stream key moved in direction dir at time now, framed with
 * ps: from the syscall's buffer or iovecs, or lost when it cannot be
 * followed.  Every record of the call carries now. */
static __always_inline void pg_frame(struct pg_scratch *scr, __u64 key, struct pg_state *ps,
				     const struct io_args *in, long ret, __u32 dir, __u64 now)
{
	__u64 iov, iovcnt, buf = first_buf(in, &iov, &iovcnt);
	struct pg_dirstate *st = &ps->d[dir & 1];

	scr->ev.ts_ns = now;
	if (in->known && !iov && pg_whole(scr, key, st, buf, ret, dir))
		return;
	scr->ev.type = EV_PG_DATA;
	scr->ev.sock = key;
	scr->ev.dir = dir;
	ev_reset(scr);
	scr->segs[0].skipped = st->pend_skipped;
	scr->segs[0].lost = st->pend_lost;
	st->pend_skipped = st->pend_lost = 0;
	if (!in->known) {
		/* Not from a syscall whose buffer we can follow (sendfile,
		 * sendmmsg, io_uring): the collector resynchronizes. */
		lose_sync(scr, ps, st, ret);
	} else if (iov) {
		frame_iov(scr, ps, iov, iovcnt, ret, dir);
	} else {
		frame_chunk(scr, ps, buf, ret, dir);
	}
	if (scr->ev.len) {
		pg_flush(scr, ps);
		return;
	}
	/* Only gaps: carry them to the next event rather than send them alone. */
	for (int i = 0; i < PG_SEGS_MAX; i++) {
		if (i >= scr->ev.nsegs)
			break;
		st->pend_skipped += scr->segs[i].skipped;
		st->pend_lost += scr->segs[i].lost;
	}
}

/* The first bytes a server's end received open a PostgreSQL session: a
 * backend on a port not known to be PostgreSQL's.  It calls nobody, and a
 * record per statement would cost the most traffic there is. */
static __always_inline bool pg_startup(int ret)
{
	struct io_args in = {};
	__u64 iov, iovcnt, buf;
	__u8 b[8] = {};

	if (ret < 8)
		return false;
	syscall_args(&in);
	if (in.nr != NR_read && in.nr != NR_recvfrom && in.nr != NR_readv && in.nr != NR_recvmsg)
		return false;
	buf = first_buf(&in, &iov, &iovcnt);
	return !bpf_probe_read_user(b, sizeof(b), (void *)buf) && looks_untyped(b);
}

/* When a TCP connection's call happened: the clock TCP last read for it,
 * a load where bpf_ktime_get_ns is a helper call, a clock read and an
 * indirect call.  A record's time must fall within its syscall: the
 * collector merges the CPUs' rings by time, which keeps a connection's
 * records in order only so.  A receive that copied data refreshed it
 * after each copy (tcp_rcv_space_adjust), and the backlog processed at
 * the socket's release only later.  Bytes all sent were pushed after this
 * syscall queued them (tcp_write_xmit refreshes it first thing).  While
 * some are held back, TCP may not have pushed in this syscall at all
 * (autocorking, a reset), leaving an older clock; a socket in a sockmap
 * (its psock in sk_user_data) may move data past TCP altogether: then
 * the time is read. */
static __always_inline __u64 tcp_clock(struct sock *sk, __u32 dir)
{
	const struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));

	if (sk->sk_user_data || (dir == PG_DIR_FRONTEND && tp->snd_nxt != tp->write_seq))
		return bpf_ktime_get_ns();
	return tp->tcp_clock_cache;
}

/* ret bytes of a PostgreSQL connection moved in direction dir; the socket
 * is scr->ev.sock.  A global function, verified once on its own: its
 * callers hold the socket's state in one of two kinds of memory (a slot
 * or socket storage), and inline the framing would be verified for each.
 * It takes the socket as a number, read back from scr, since a global
 * function's arguments cannot be kernel pointers. */
__noinline int pg_io(struct pg_scratch *scr, struct sockinfo *si, const struct io_args *in, long ret,
		     __u32 dir)
{
	struct sock *sk;
	__u64 skp;
	bool tcp;

	if (!scr || !si || !in)
		return 0;
	skp = scr->ev.sock;
	sk = bpf_rdonly_cast((void *)skp, bpf_core_type_id_kernel(struct sock));
	/* The call that opens it takes the time after EV_PG_OPEN's, which the
	 * collector must see first. */
	tcp = si->pg_opened && sk->__sk_common.skc_family != AF_UNIX;
	if (!si->pg_opened) {
		__u64 iov, iovcnt, buf = first_buf(in, &iov, &iovcnt);
		__u8 b[8] = {};

		si->pg_opened = 1;
		bpf_probe_read_user(b, sizeof(b), (void *)buf);
		pg_open(sk, skp, dir == PG_DIR_FRONTEND && ret >= 8 && looks_untyped(b));
	}
	/* TLS: the plaintext comes from the library (tls.bpf.h); the
	 * ciphertext is left out on purpose. */
	if (ps_encrypted(si)) {
		count_n(CNT_PG_SKIPPED, ret);
		return 0;
	}
	pg_frame(scr, skp, &si->pg, in, ret, dir, tcp ? tcp_clock(sk, dir) : bpf_ktime_get_ns());
	return 0;
}

#include "tls.bpf.h"

/* PostgreSQL's end of a connection, announced: quiet from its next call
 * when its client is traced here too.  Without --cgroup every process here
 * is. */
static __always_inline void quiet(struct sock *sk, struct sockinfo *si)
{
	if (!filter_cgroups && peer_local(sk))
		si->quiet = 1;
}

static __always_inline int sock_io(struct sock *sk, int ret, __u32 dir)
{
	struct pg_scratch *scr;
	struct sockinfo *si;
	__u32 zero = 0;
	struct io_args in = {};
	__u16 family;

	/* Failed and empty calls first: a server's EAGAIN reads are a third
	 * of its socket calls, and need nothing. */
	if (!capturing || !sk || ret <= 0)
		return 0;
	family = sk->__sk_common.skc_family;
	if (family == AF_UNIX) {
		/* Only the client end of a Unix stream has no address of its own. */
		struct unix_sock *us = bpf_skc_to_unix_sock(sk);

		if (!us || sk->sk_type != SOCK_STREAM || us->addr)
			return 0;
		si = bpf_sk_storage_get(&sockinfo, sk, 0, 0);
	} else if ((family != AF_INET && family != AF_INET6) || sk->sk_protocol != IPPROTO_TCP) {
		return 0;
	} else {
		si = tcp_info(sk);
	}
	if (!si) {
		si = classify(sk, family);
		if (!si)
			return 0;
		if (si->kind == SK_TCP && is_pg_port(sk->__sk_common.skc_num))
			quiet(sk, si);
	} else if (si->quiet && !tls_entered) {
		/* Not once TLS is in use: a backend that is a TLS client itself
		 * (a foreign data wrapper) must tie its server-side SSL calls to
		 * this socket, or their plaintext would pass for its client
		 * connection's. */
		return 0;
	}
	/* A change of direction to sending starts an exchange: a request on
	 * a client's end, its reply on a server's.  A keep-alive connection
	 * then counts its requests, not only itself. */
	if (si->last_dir != dir + 1 && si->kind != SK_OTHER) {
		if (si->server && !si->last_dir && dir == PG_DIR_BACKEND && pg_startup(ret)) {
			si->server = 0;
			quiet(sk, si);
		}
		si->last_dir = dir + 1;
		si->exchanges += dir == PG_DIR_FRONTEND;
		nest_turn(sk, si->server, dir);
	}
	if (si->kind >= SK_TCP && tls_entered)
		tls_io(sk, si);
	if (si->kind < SK_CANDIDATE)
		return 0;
	if (si->kind == SK_CANDIDATE && dir != PG_DIR_FRONTEND)
		return 0;
	syscall_args(&in);
	switch (in.nr) {
	case NR_read: case NR_recvfrom: case NR_readv: case NR_recvmsg:
		in.known = dir == PG_DIR_BACKEND;
		break;
	case NR_write: case NR_sendto: case NR_writev: case NR_sendmsg:
		in.known = dir == PG_DIR_FRONTEND;
		break;
	}
	if (si->kind == SK_CANDIDATE) {
		__u64 iov, iovcnt;

		/* Not PostgreSQL: a traced TCP socket still counts exchanges. */
		si->kind = in.known && looks_pg(first_buf(&in, &iov, &iovcnt), ret) ? SK_PG :
			   family == AF_UNIX ? SK_OTHER : SK_TCP;
		if (si->kind != SK_PG)
			return 0;
	}
	scr = bpf_map_lookup_elem(&pgscratch, &zero);
	if (!scr)
		return 0;
	scr->ev.sock = (__u64)sk;
	pg_io(scr, si, &in, ret, dir);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
	return sock_io(sk, ret, PG_DIR_FRONTEND);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
	/* A peek is read again; an urgent byte is not part of the stream
	 * (and leaves the TCP clock as it was). */
	if (flags & (MSG_PEEK | MSG_OOB))
		return 0;
	return sock_io(sk, ret, PG_DIR_BACKEND);
}
