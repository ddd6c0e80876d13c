/* The contract between bpf/seams.bpf.c and the collector: event records on
 * the ring buffer, counters and limits.  Fixed-width types only, largest
 * fields first, so both compilers lay the structs out the same way. */
#ifndef SEAMS_H
#define SEAMS_H

#define SEAMS_COMM_LEN     16
#define SEAMS_MAX_PG_PORTS 8
#define SEAMS_MAX_CGROUPS  64
/* cgroup ancestry levels checked by the --cgroup filter */
#define SEAMS_CGROUP_DEPTH 16

enum seams_event_type {
	EV_CONNECT = 1, /* a connect() from this host got established */
	EV_CONNECT_FAIL,/* a connect() that never got established */
	EV_ACCEPT,      /* accept() returned a connection */
	EV_SEEN,        /* traffic on a connection opened before the capture */
	EV_CLOSE,       /* a tracked connection closed */
};

enum seams_counter {
	CNT_LOST_EVENTS,  /* ring buffer full: event dropped */
	CNT_SOCK_FULL,    /* connection table full: connection not tracked */
	CNT_MAX,
};

/* Addresses are IPv6 or IPv4-mapped IPv6 (::ffff:a.b.c.d), so one join key
 * serves both families. */
struct conn_event {
	__u64 ts_ns;      /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 cgroup_id;  /* cgroup v2 id of the process (0 when unknown) */
	__u64 sock;       /* kernel struct sock address: the connection's key */
	__u64 bytes_sent; /* EV_CLOSE: bytes acked by the peer */
	__u64 bytes_received;
	__u64 start_ns;   /* EV_CLOSE: when tracking began */
	__u32 tgid;
	__u32 pid;
	__u32 type;       /* enum seams_event_type */
	__u16 lport;      /* local and remote ports, host order */
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[SEAMS_COMM_LEN];
};

#endif
