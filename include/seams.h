/* The contract between bpf/seams.bpf.c and the collector: event records on
 * the ring buffer and the per-CPU PostgreSQL rings, counters and limits.  Fixed-width types only, largest
 * fields first after a common header, so both compilers lay the structs out
 * the same way. */
#ifndef SEAMS_H
#define SEAMS_H

#define SEAMS_COMM_LEN     16
#define SEAMS_MAX_PG_PORTS 8
#define SEAMS_MAX_CGROUPS  64
/* cgroup ancestry levels checked by the --cgroup filter */
#define SEAMS_CGROUP_DEPTH 16
/* The ring buffer, for connection events and PostgreSQL connection opens;
 * the collector is woken once a quarter of it is full and otherwise drains
 * it on a timer, since a wakeup per event costs more than the event. */
#define SEAMS_RING_SIZE    (2 << 20)

enum seams_event_type {
	EV_CONNECT = 1, /* a connect() from this host got established */
	EV_CONNECT_FAIL,/* a connect() that never got established */
	EV_ACCEPT,      /* accept() returned a connection */
	EV_SEEN,        /* traffic on a connection opened before the capture */
	EV_CLOSE,       /* a tracked connection closed */
	EV_PG_OPEN,     /* a client connection found to speak PostgreSQL */
	EV_PG_DATA,     /* bytes of a PostgreSQL connection, framed */
	EV_WAKE,        /* a CPU's PostgreSQL ring is half full: read it now */
	EV_NEST,        /* an inbound request got its reply: the calls made inside it */
	EV_EXEC,        /* a traced process exec'd: probe its TLS library now */
	EV_PG_TLS,      /* a traced client's PostgreSQL connection went TLS */
	EV_PG_PLAIN,    /* a traced client's SSLRequest was refused: plaintext */
};

enum seams_counter {
	CNT_LOST_EVENTS,    /* ring buffer full: connection event dropped */
	CNT_SOCK_FULL,      /* connection table full: connection not tracked */
	CNT_PG_SKIPPED,     /* PostgreSQL bytes left out by design (rows, copy data, TLS) */
	CNT_PG_LOST,        /* PostgreSQL bytes lost: out of step, or their CPU's ring full */
	CNT_PG_EVENTS_LOST, /* PostgreSQL data events dropped (their CPU's ring full) */
	CNT_PG_FULL,        /* per-socket state could not be allocated: socket not traced */
	CNT_NEST_FULL,      /* per-thread nesting state could not be allocated */
	CNT_TLS_FULL,       /* TLS table full: a TLS connection's plaintext not traced */
	CNT_NO_SLOT,        /* traced TCP socket whose slot was in use: state in socket storage */
	CNT_MAX,
};

/* Every event starts with these fields, so the collector can dispatch on
 * type before it knows the rest of the layout. */
struct event_hdr {
	__u64 ts_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 sock;  /* kernel struct sock address: the connection's key */
	__u32 type;  /* enum seams_event_type */
};

/* Addresses are IPv6 or IPv4-mapped IPv6 (::ffff:a.b.c.d), so one join key
 * serves both families. */
struct conn_event {
	__u64 ts_ns;
	__u64 sock;
	__u32 type;
	__u32 tgid;
	__u64 cgroup_id;  /* cgroup v2 id of the process (0 when unknown) */
	__u64 bytes_sent; /* EV_CLOSE: bytes acked by the peer */
	__u64 bytes_received;
	__u64 start_ns;   /* EV_CLOSE: when tracking began */
	__u64 exchanges;  /* EV_CLOSE: sends that followed a receive (or came first):
			   * a client's requests, a server's replies */
	__u32 pid;
	__u16 lport;      /* local and remote ports, host order */
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[SEAMS_COMM_LEN];
	__u8 peer_closed; /* EV_SEEN: the peer had closed its side before this end was seen */
	__u8 pad[7];
};

/* PostgreSQL payload capture.  The kernel follows message framing and copies
 * only what the decoder needs: each message's header and the first bytes of
 * its body (all of a Query or Parse up to PG_SQL_COPY), never DataRow or
 * CopyData messages.  What it leaves out is reported as gaps, so the
 * collector stays in step and bytes copied do not grow with result size. */
#define PG_DATA_MAX  16384 /* payload bytes in one event */
#define PG_SEGS_MAX  16    /* byte runs in one event, each followed by gaps */
#define PG_SQL_COPY  16000 /* longest SQL text copied; longer is truncated */
#define PG_PATH_MAX  108   /* sun_path */

/* The message types legal in each direction (PostgreSQL's protocol.h), as
 * lists of X(type): the framer's plan and the decoder's table are both made
 * from them, so the kernel and the collector agree on what is legal. */
#define PG_FRONTEND_TYPES(X) \
	X('Q') X('P') X('B') X('C') X('D') X('E') X('F') X('H') X('S') X('X') \
	X('c') X('f') X('p') X('d')
#define PG_BACKEND_TYPES(X) \
	X('C') X('E') X('N') X('Z') X('R') X('S') X('1') X('2') X('3') X('A') \
	X('G') X('H') X('I') X('K') X('T') X('V') X('W') X('c') X('n') X('s') \
	X('t') X('v') X('D') X('d')

/* PostgreSQL records travel in one ring per CPU, mmapped by the collector,
 * not in the shared ring buffer: its reservation takes a lock with
 * interrupts off and an atomic commit, and every CPU takes the same lock.
 * A CPU's own ring needs neither; under pgbench on_recv went from 363 to
 * 296 ns per run (tests/bench/bpf_cost.sh, paired rounds).  Each record is
 * a u32 length, 4 bytes of padding, then that many bytes (one
 * pg_data_event), padded to 8.  A record starting
 * near the end runs on into the slack after the ring instead of wrapping.
 * The collector merges the rings and the ring buffer by timestamp. */
/* Per CPU, a power of two: 100 ms of the collector's timer at 10 MB/s.
 * Past half full, the program wakes the collector through the ring buffer.
 * A smaller ring that the timer must drain sooner did worse: 128 KB every
 * 20 ms cost on_recv 150 ns more, and the collector three times as much. */
#define PG_RING_SIZE (1u << 20)
#define PG_REC_MAX   (1u << 15)   /* longest record with its header, a power of two */

struct pg_ring {
	__u64 head;       /* bytes written, ever: advanced by the kernel */
	__u64 tail_seen;  /* the kernel's last read of tail */
	__u64 busy;       /* a program is writing (a preempted one must not be overwritten) */
	__u8 pad1[40];
	__u64 tail;       /* bytes read, ever: advanced by the collector */
	__u8 pad2[56];
	__u8 data[PG_RING_SIZE + PG_REC_MAX];
};

enum pg_direction { PG_DIR_FRONTEND = 0, PG_DIR_BACKEND = 1 };

/* The plaintext of a TLS connection, taken from the TLS library, is a
 * stream of its own: its key is the socket's with this bit set (a struct
 * sock is never at an odd address). */
#define PG_TLS_STREAM 1ULL

/* Processes whose TLS library is probed, and the probes per library. */
#define SEAMS_MAX_TLS_PROCS 256

/* EV_PG_OPEN: sock is the connection's key (the same as its conn_event's for
 * TCP); a Unix-domain connection names the server's socket path instead. */
struct pg_open_event {
	__u64 ts_ns;
	__u64 sock;
	__u32 type;
	__u32 tgid;
	__u64 cgroup_id;
	__u32 pid;
	__u32 family;    /* AF_INET6 (tuple in laddr/raddr) or AF_UNIX (path) */
	__u16 lport;
	__u16 rport;
	__u8 synced;     /* seen from its startup message */
	__u8 pad[3];
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[SEAMS_COMM_LEN];
	char path[PG_PATH_MAX];
};

/* A run of copied bytes, then bytes the framer left out on purpose (the rest
 * of a message's body, or whole DataRow/CopyData messages: the collector
 * stays in step), then bytes lost (it must resynchronize). */
struct pg_seg {
	__u64 skipped;
	__u64 lost;
	__u32 len;
	__u32 pad;
};

/* EV_PG_DATA: this header, then len bytes of data, then nsegs struct pg_seg
 * (not aligned: copy them out).  Only what is used is sent, since the cost
 * of a record grows with its size. */
struct pg_data_event {
	__u64 ts_ns;
	__u64 sock;
	__u32 type;
	__u32 len;       /* bytes of data, the sum of the segments' len */
	__u32 nsegs;     /* 1..PG_SEGS_MAX */
	__u32 dir;       /* enum pg_direction */
};

/* Request nesting, per thread.  A receive that turns a server's end of a
 * connection (accepted during the capture) from sending to receiving starts
 * an inbound request; sends and receives on client ends until the first
 * send of the reply are calls made inside it, one slot per outbound
 * connection.  One EV_NEST per inbound request, when its reply starts. */
#define SEAMS_NEST_CALLS 8

enum nest_flags {
	/* Another inbound request began on the thread before this one's reply,
	 * or a reply went out for another: an event loop interleaving requests,
	 * or a request its client abandoned.  Its calls are not attributed. */
	NEST_OVERLAP = 1,
};

struct nest_call {
	__u64 sock;     /* the client end of the outbound connection */
	__u64 start_ns; /* the last call's send */
	__u64 busy_ns;  /* summed time from each send to its reply */
	__u32 calls;    /* sends that followed a receive, or came first */
	__u32 pending;  /* 1: the last call had no reply when the request ended */
};

/* Sent with only its ncalls slots. */
struct nest_event {
	__u64 ts_ns;    /* the first send of the reply */
	__u64 sock;     /* the inbound connection's server end */
	__u32 type;
	__u32 ncalls;   /* slots used, at most SEAMS_NEST_CALLS */
	__u64 start_ns; /* the request's first receive */
	__u32 overflow; /* calls on connections past the slots, left out */
	__u32 flags;    /* enum nest_flags */
	struct nest_call calls[SEAMS_NEST_CALLS];
};

/* EV_EXEC, EV_PG_TLS, EV_PG_PLAIN: what TLS probing acts on, about the
 * traced process tgid. */
struct tls_note {
	__u64 ts_ns;
	__u64 sock;      /* 0 */
	__u32 type;
	__u32 tgid;
};

#endif
