/* Connection tracking: connect/accept/seen/close events per socket, joined by
 * their 4-tuple into service -> service edges as they arrive.  A closed
 * connection is folded into its edge's totals and freed, so memory follows
 * the open connections and the edges, not the time running. */
#ifndef SEAMS_CONNTRACK_H
#define SEAMS_CONNTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/types.h>

#include "graph.h"
#include "hist.h"
#include "seams.h"
#include "u64map.h"

/* Limits.  What does not fit is counted and folded into a "~other" peer. */
#define CT_MAX_OPEN        262144 /* live connections tracked */
#define CT_MAX_EDGES       20000  /* tcp edge aggregates */
#define CT_MAX_SERVERS     256    /* distinct servers per client service */
#define CT_MAX_SERVICES    20000
#define CT_MAX_PROCS       16     /* process names kept per service */
#define CT_LINGER_NS       2000000000ULL /* a closed end waits this long for its peer */
#define CT_MAX_NEST        4096   /* nesting aggregates: inbound edges and (inbound, outbound) pairs */

/* Which of an aggregate's two sets of counts: since start, or this window. */
enum { STAT_TOTAL, STAT_WINDOW, STAT_NR };

/* Why a series or a connection was folded away or refused. */
enum ct_drop {
	DROP_EDGES,      /* too many edges: folded into ~other */
	DROP_SERVERS,    /* too many servers for one client: folded into ~other */
	DROP_SERVICES,   /* too many services: named ~other */
	DROP_CONNS,      /* too many open connections: not tracked */
	DROP_TABLES,     /* too many tables in one database: folded into ~other */
	DROP_STATEMENTS, /* too many statement texts on one edge: counted as ~other */
	DROP_SQL_SERIES, /* too many sql aggregates: folded into ~other */
	DROP_NEST,       /* too many nesting aggregates: requests not counted */
	DROP_NR,
};
extern const char *const ct_drop_names[DROP_NR];

struct service {
	char *name;
	char *cgroup;    /* full cgroup v2 path */
	char **procs;    /* distinct process names, unsorted, at most CT_MAX_PROCS */
	size_t nprocs;
	uint64_t last_ns;/* last event that named it */
	size_t nservers; /* tcp aggregates it is the client of */
	bool mark;       /* in use, for the eviction sweep */
};

enum conn_role { ROLE_UNKNOWN, ROLE_CLIENT, ROLE_SERVER };

struct conn {
	struct service *svc;
	struct conn *peer;        /* the other end, when it is on this host */
	struct conn *next_tuple;  /* chain in the tuple index */
	struct conn *next_closed; /* queue of closed ends waiting to fold */
	uint64_t sock;
	uint64_t open_ns, last_ns;/* monotonic */
	uint64_t bytes_sent, bytes_received;
	uint64_t exchanges;       /* at close: its requests (client) or replies (server) */
	uint32_t tgid;
	uint8_t laddr[16], raddr[16];
	uint16_t lport, rport;
	uint8_t role;
	bool opened;       /* connect/accept seen: it opened while we watched */
	bool closed;
	bool peer_closed;  /* first seen after its peer had closed its side */
	bool peer_counted; /* its client end on this host was counted already */
};

struct tcpstats {
	uint64_t connections, failed;
	uint64_t requests;        /* exchanges on the connections that closed */
	uint64_t bytes_sent, bytes_received;
	uint64_t first_ns, last_ns;
	struct hist duration;
};

/* One edge: a client (a service, or an external address) to a server (a
 * service, or an external address and port). */
struct tcpkey {
	struct service *client, *server; /* NULL: the external end */
	uint8_t addr[16];                /* the external end's address */
	uint16_t port;                   /* the server's port */
};

struct tcpagg {
	struct tcpagg *next; /* hash chain */
	struct tcpkey key;
	struct tcpstats st[STAT_NR];
};

/* Requests served on an inbound edge, or, for a pair, the calls made on an
 * outbound edge inside them. */
struct neststats {
	uint64_t requests;   /* inbound: replied; pair: requests with a call on the outbound edge */
	uint64_t ambiguous;  /* inbound: interleaved with another (NEST_OVERLAP), not attributed */
	uint64_t calls;      /* pair: calls (changes of direction to sending) */
	uint64_t unreplied;  /* pair: requests whose last call had no reply when they ended */
	uint64_t last_ns;
	struct hist latency; /* inbound: request wall time; pair: time in the hop per request */
};

/* out is all zero for an inbound edge's own entry. */
struct nestkey {
	struct tcpkey in, out;
};

struct nestagg {
	struct nestagg *next; /* hash chain */
	struct nestkey key;
	struct neststats st[STAT_NR];
};

/* Nesting events that could not be used, by why. */
struct nestbad {
	uint64_t unresolved; /* inbound end unknown (opened before the capture) */
	uint64_t invalid;    /* timestamps out of order */
	uint64_t calls_unresolved; /* outbound ends unknown (e.g. Unix sockets) */
	uint64_t calls_overflow;   /* calls on connections past the kernel's slots */
};

struct endpoint {
	uint8_t addr[16];
	uint16_t port;
	struct service *svc;
	uint64_t last_ns;
};

struct conntrack {
	struct u64map open;      /* kernel sock -> live conn */
	struct u64map tuples;    /* tuple hash -> live conns with it (chain) */
	struct conn *closed_head, *closed_tail;
	size_t nclosed;
	struct u64map services;  /* name hash -> service */
	struct u64map aggs;      /* key hash -> tcpagg chain */
	size_t naggs;
	struct u64map closing;   /* kernel sock -> the closed end waiting with it, latest */
	struct u64map nest;      /* nestkey hash -> nestagg chain */
	size_t nnest;
	struct nestbad nestbad;
	struct u64map servers;   /* addr:port hash -> endpoint a service accepted on */
	struct u64map listeners; /* addr:port hash -> (void *)1: in LISTEN per /proc */
	uint64_t client_gone;    /* server ends left out: client gone before we looked */
	uint64_t dropped[DROP_NR];
	uint64_t evicted;        /* aggregates and services freed after idling */
	uint64_t now_ns;         /* latest event time seen (monotonic) */
	struct service other;    /* "~other": what did not fit, or had no memory */
};

void conntrack_init(struct conntrack *ct);
void conntrack_free(struct conntrack *ct);

/* The service called name (interned), with comm added to its processes.
 * Never NULL: past the limit, or out of memory, it is ct->other. */
struct service *conntrack_service(struct conntrack *ct, const char *name, const char *cgroup,
				  const char *comm);

/* One kernel event, owned by svc (NULL for EV_CLOSE, which names no task). */
void conntrack_event(struct conntrack *ct, const struct conn_event *e, struct service *svc);

/* One EV_NEST: count the request on its inbound edge and each call on its
 * (inbound, outbound) pair. */
void conntrack_nest(struct conntrack *ct, const struct nest_event *e);
/* Every nesting aggregate (an inbound edge's when key.out is zero). */
void conntrack_for_each_nest(const struct conntrack *ct, void (*fn)(void *ctx, const struct nestagg *a),
			     void *ctx);

/* Fold closed ends that have waited long enough for their peer. */
void conntrack_tick(struct conntrack *ct, uint64_t now_ns);
/* Zero every aggregate's window counts. */
void conntrack_window_reset(struct conntrack *ct);
/* Free aggregates and server endpoints idle since before cutoff (monotonic
 * ns), and mark the services still in use.  Services go in
 * conntrack_sweep_services(), after every other user has marked its own. */
void conntrack_evict(struct conntrack *ct, uint64_t cutoff_ns);
void conntrack_sweep_services(struct conntrack *ct, uint64_t cutoff_ns);

void conntrack_add_listener(struct conntrack *ct, const uint8_t addr[16], uint16_t port);
/* Sockets in LISTEN from socket diagnostics (else /proc/net/tcp and tcp6),
 * replacing the last read: tells which end of a connection seen only
 * mid-stream is the server. */
int conntrack_load_listeners(struct conntrack *ct);

/* Service, external and tcp edges into g, from counts `which` (STAT_TOTAL
 * or STAT_WINDOW) plus the connections still open.  Reads, never changes,
 * ct.  Monotonic times become wall-clock by adding mono_to_real_ns. */
void conntrack_to_graph(const struct conntrack *ct, struct graph *g, int which, int64_t mono_to_real_ns);
/* Client ends whose client had gone before we looked, including those
 * still waiting to fold. */
uint64_t conntrack_client_gone(const struct conntrack *ct);

/* Every edge, with the connections still open folded in, for metrics: fn
 * gets each aggregate (a temporary one for edges with open connections). */
void conntrack_for_each_edge(const struct conntrack *ct, int which,
			     void (*fn)(void *ctx, const struct tcpagg *a), void *ctx);

size_t conntrack_open_count(const struct conntrack *ct);

/* The live end of a connection on this host with this local and remote
 * address, or NULL: for a client's connection, its server's end. */
struct conn *conntrack_find(const struct conntrack *ct, const uint8_t laddr[16], uint16_t lport,
			    const uint8_t raddr[16], uint16_t rport);

/* The service that accepted connections on addr:port, or NULL. */
struct service *conntrack_server(const struct conntrack *ct, const uint8_t addr[16], uint16_t port);

/* The graph node of a service, with its processes. */
json_t *conntrack_node(struct graph *g, const struct service *s);
/* The graph node of an external address; port < 0 for a client. */
json_t *conntrack_remote_node(struct graph *g, const uint8_t addr[16], int port);

/* "10.0.0.1", "::1"; with a port "10.0.0.1:80", "[::1]:80".  buf >= 64. */
void addr_format(const uint8_t addr[16], int port, char *buf, size_t len);

/* FNV-1a, for the keys the collector hashes. */
#define FNV_SEED 0xcbf29ce484222325ULL
uint64_t fnv1a(uint64_t h, const void *p, size_t n);

#endif
