/* Connection tracking: connect/accept/seen/close events per socket, joined by
 * their 4-tuple into service -> service edges. */
#ifndef SEAMS_CONNTRACK_H
#define SEAMS_CONNTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/types.h>

#include "graph.h"
#include "seams.h"
#include "u64map.h"

struct service {
	char *name;
	char *cgroup;    /* full cgroup v2 path */
	char **procs;    /* distinct process names, unsorted */
	size_t nprocs;
};

enum conn_role { ROLE_UNKNOWN, ROLE_CLIENT, ROLE_SERVER };

struct conn {
	struct service *svc;
	struct conn *next_same_tuple; /* chain in the join index */
	uint64_t open_ns, last_ns;    /* monotonic */
	uint64_t bytes_sent, bytes_received;
	uint32_t tgid;
	uint8_t laddr[16], raddr[16];
	uint16_t lport, rport;
	uint8_t role;
	bool opened;  /* connect/accept seen: it opened during the capture */
	bool closed;
	bool matched;
	bool peer_closed; /* first seen after its peer had closed its side */
};

struct conn_failure {
	struct service *svc;
	uint64_t ts_ns;
	uint8_t raddr[16];
	uint16_t rport;
};

struct listener {
	uint8_t addr[16];
	uint16_t port;
};

struct conntrack {
	struct u64map open;         /* kernel sock -> conn still open */
	struct u64map services;     /* name hash -> service */
	struct conn **conns;        /* every connection, in arrival order */
	size_t nconns, capconns;
	struct conn_failure *fails;
	size_t nfails, capfails;
	struct u64map servers;      /* hash of local addr:port -> a server end there */
	struct listener *listeners; /* sockets in LISTEN when the capture ended */
	size_t nlisteners, caplisteners;
	size_t client_gone;         /* server ends left out: client gone before the capture */
};

void conntrack_init(struct conntrack *ct);
void conntrack_free(struct conntrack *ct);

/* The service called name (interned), with comm added to its processes. */
struct service *conntrack_service(struct conntrack *ct, const char *name, const char *cgroup,
				  const char *comm);

/* One kernel event, owned by svc (NULL for EV_CLOSE, which names no task). */
void conntrack_event(struct conntrack *ct, const struct conn_event *e, struct service *svc);

void conntrack_add_listener(struct conntrack *ct, const uint8_t addr[16], uint16_t port);
/* Sockets in LISTEN from /proc/net/tcp and tcp6: tells which end of a
 * connection seen only mid-stream is the server. */
int conntrack_load_listeners(struct conntrack *ct);

/* Join both ends and add service, external and tcp edges to g.  Monotonic
 * times become wall-clock by adding mono_to_real_ns. */
void conntrack_to_graph(struct conntrack *ct, struct graph *g, int64_t mono_to_real_ns);

size_t conntrack_open_count(const struct conntrack *ct);

/* The end of a connection seen on this host with this local and remote
 * address, or NULL: for a client's connection, its server's end. */
struct conn *conntrack_find(struct conntrack *ct, const uint8_t laddr[16], uint16_t lport,
			    const uint8_t raddr[16], uint16_t rport);

/* The service that accepted connections on addr:port, or NULL. */
struct service *conntrack_server(struct conntrack *ct, const uint8_t addr[16], uint16_t port);

/* The graph node of a service, with its processes. */
json_t *conntrack_node(struct graph *g, const struct service *s);

/* "10.0.0.1", "::1"; with a port "10.0.0.1:80", "[::1]:80".  buf >= 64. */
void addr_format(const uint8_t addr[16], int port, char *buf, size_t len);

#endif
