/* Connection tracking.  The kernel reports each end of a connection on its
 * own: a connect() on the client, an accept() on the server, or, for
 * connections already open when the capture began, their first read or
 * write.  Ends are joined here by 4-tuple once the capture is over. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conntrack.h"

void conntrack_init(struct conntrack *ct)
{
	memset(ct, 0, sizeof(*ct));
}

static void service_free(struct service *s)
{
	for (size_t i = 0; i < s->nprocs; i++)
		free(s->procs[i]);
	free(s->procs);
	free(s->name);
	free(s->cgroup);
	free(s);
}

void conntrack_free(struct conntrack *ct)
{
	struct service *s;

	for (size_t i = 0; i < ct->nconns; i++)
		free(ct->conns[i]);
	free(ct->conns);
	free(ct->fails);
	free(ct->listeners);
	u64map_for_each(&ct->services, i, s)
		service_free(s);
	u64map_free(&ct->services);
	u64map_free(&ct->open);
	u64map_free(&ct->servers);
	memset(ct, 0, sizeof(*ct));
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

#define FNV_SEED 0xcbf29ce484222325ULL

/* Grow *arr (of *cap elements of size sz) to hold one more. */
static void *grow(void *arr, size_t *cap, size_t n, size_t sz)
{
	void *p;

	if (n < *cap)
		return arr;
	*cap = *cap ? *cap * 2 : 64;
	p = realloc(arr, *cap * sz);
	if (!p) {
		perror("seams: out of memory");
		exit(1);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");

	if (!p) {
		perror("seams: out of memory");
		exit(1);
	}
	return p;
}

struct service *conntrack_service(struct conntrack *ct, const char *name, const char *cgroup,
				  const char *comm)
{
	uint64_t h = fnv1a(FNV_SEED, name, strlen(name));
	struct service *s;

	/* Probe past the rare hash collision with another name. */
	while ((s = u64map_get(&ct->services, h)) && strcmp(s->name, name))
		h++;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s || u64map_put(&ct->services, h, s)) {
			perror("seams: out of memory");
			exit(1);
		}
		s->name = xstrdup(name);
		s->cgroup = xstrdup(cgroup);
	}
	if (comm && *comm) {
		for (size_t i = 0; i < s->nprocs; i++)
			if (!strcmp(s->procs[i], comm))
				return s;
		s->procs = realloc(s->procs, (s->nprocs + 1) * sizeof(*s->procs));
		if (!s->procs) {
			perror("seams: out of memory");
			exit(1);
		}
		s->procs[s->nprocs++] = xstrdup(comm);
	}
	return s;
}

void conntrack_event(struct conntrack *ct, const struct conn_event *e, struct service *svc)
{
	struct conn *c;

	switch (e->type) {
	case EV_CONNECT:
	case EV_ACCEPT:
	case EV_SEEN:
		c = calloc(1, sizeof(*c));
		if (!c) {
			perror("seams: out of memory");
			exit(1);
		}
		c->svc = svc;
		c->tgid = e->tgid;
		c->open_ns = c->last_ns = e->ts_ns;
		memcpy(c->laddr, e->laddr, 16);
		memcpy(c->raddr, e->raddr, 16);
		c->lport = e->lport;
		c->rport = e->rport;
		c->role = e->type == EV_CONNECT ? ROLE_CLIENT :
			  e->type == EV_ACCEPT ? ROLE_SERVER : ROLE_UNKNOWN;
		c->opened = e->type != EV_SEEN;
		c->peer_closed = e->type == EV_SEEN && e->peer_closed;
		ct->conns = grow(ct->conns, &ct->capconns, ct->nconns, sizeof(*ct->conns));
		ct->conns[ct->nconns++] = c;
		/* A socket address is reused only after its close, which we may
		 * have missed: the newer connection replaces the older. */
		if (u64map_put(&ct->open, e->sock, c)) {
			perror("seams: out of memory");
			exit(1);
		}
		break;
	case EV_CLOSE:
		c = u64map_del(&ct->open, e->sock);
		if (!c)
			break;
		c->closed = true;
		c->last_ns = e->ts_ns;
		c->bytes_sent = e->bytes_sent;
		c->bytes_received = e->bytes_received;
		break;
	case EV_CONNECT_FAIL:
		ct->fails = grow(ct->fails, &ct->capfails, ct->nfails, sizeof(*ct->fails));
		ct->fails[ct->nfails++] = (struct conn_failure){
			.svc = svc, .ts_ns = e->ts_ns, .rport = e->rport,
		};
		memcpy(ct->fails[ct->nfails - 1].raddr, e->raddr, 16);
		break;
	}
}

size_t conntrack_open_count(const struct conntrack *ct)
{
	return ct->open.len;
}

void conntrack_add_listener(struct conntrack *ct, const uint8_t addr[16], uint16_t port)
{
	for (size_t i = 0; i < ct->nlisteners; i++)
		if (ct->listeners[i].port == port && !memcmp(ct->listeners[i].addr, addr, 16))
			return;
	ct->listeners = grow(ct->listeners, &ct->caplisteners, ct->nlisteners, sizeof(*ct->listeners));
	memcpy(ct->listeners[ct->nlisteners].addr, addr, 16);
	ct->listeners[ct->nlisteners++].port = port;
}

/* /proc/net/tcp prints each 32-bit word of the address in host order. */
static void load_listeners_file(struct conntrack *ct, const char *path, int words)
{
	FILE *f = fopen(path, "r");
	char line[512];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char hex[33];
		unsigned int port, state;
		uint8_t addr[16] = { 0 };

		if (sscanf(line, " %*u: %32[0-9A-Fa-f]:%x %*32[0-9A-Fa-f]:%*x %x", hex, &port, &state) != 3 ||
		    state != 0x0A || strlen(hex) != (size_t)words * 8)
			continue;
		if (words == 1) {
			addr[10] = addr[11] = 0xff;
		}
		for (int w = 0; w < words; w++) {
			char word[9];
			uint32_t v;

			memcpy(word, hex + w * 8, 8);
			word[8] = '\0';
			v = (uint32_t)strtoul(word, NULL, 16);
			memcpy(addr + 16 - 4 * (words - w), &v, 4);
		}
		conntrack_add_listener(ct, addr, (uint16_t)port);
	}
	fclose(f);
}

int conntrack_load_listeners(struct conntrack *ct)
{
	load_listeners_file(ct, "/proc/net/tcp", 1);
	load_listeners_file(ct, "/proc/net/tcp6", 4);
	return 0;
}

static const uint8_t any6[16];
static const uint8_t any4[16] = { [10] = 0xff, [11] = 0xff };

static bool is_listening(const struct conntrack *ct, const uint8_t addr[16], uint16_t port)
{
	for (size_t i = 0; i < ct->nlisteners; i++) {
		const struct listener *l = &ct->listeners[i];

		if (l->port != port)
			continue;
		/* A wildcard listener takes any local address; "::" takes IPv4 too. */
		if (!memcmp(l->addr, addr, 16) || !memcmp(l->addr, any6, 16) ||
		    (!memcmp(l->addr, any4, 16) && !memcmp(addr, any4, 12)))
			return true;
	}
	return false;
}

void addr_format(const uint8_t addr[16], int port, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	bool v4 = !memcmp(addr, any4, 12);

	if (v4)
		inet_ntop(AF_INET, addr + 12, a, sizeof(a));
	else
		inet_ntop(AF_INET6, addr, a, sizeof(a));
	if (port < 0)
		snprintf(buf, len, "%s", a);
	else if (v4)
		snprintf(buf, len, "%s:%d", a, port);
	else
		snprintf(buf, len, "[%s]:%d", a, port);
}

static uint64_t tuple_hash(const uint8_t la[16], uint16_t lp, const uint8_t ra[16], uint16_t rp)
{
	uint64_t h = fnv1a(FNV_SEED, la, 16);

	h = fnv1a(h, &lp, sizeof(lp));
	h = fnv1a(h, ra, 16);
	return fnv1a(h, &rp, sizeof(rp));
}

/* The server end of client connection c: same tuple seen from the other
 * side; when a tuple was reused, the one opened closest in time. */
static struct conn *find_server(struct u64map *index, const struct conn *c)
{
	struct conn *best = NULL, *s;
	uint64_t best_d = UINT64_MAX;

	for (s = u64map_get(index, tuple_hash(c->raddr, c->rport, c->laddr, c->lport)); s;
	     s = s->next_same_tuple) {
		uint64_t d = s->open_ns > c->open_ns ? s->open_ns - c->open_ns : c->open_ns - s->open_ns;

		if (s->matched || s->lport != c->rport || s->rport != c->lport ||
		    memcmp(s->laddr, c->raddr, 16) || memcmp(s->raddr, c->laddr, 16))
			continue;
		if (d < best_d) {
			best = s;
			best_d = d;
		}
	}
	return best;
}

struct samples {
	double *v;
	size_t n, cap;
};

static const char *node_id(json_t *node)
{
	return json_string_value(json_object_get(node, "id"));
}

json_t *conntrack_node(struct graph *g, const struct service *s)
{
	json_t *node = graph_service(g, s->name, s->cgroup);

	for (size_t i = 0; i < s->nprocs; i++)
		graph_node_add_string(node, "processes", s->procs[i]);
	return node;
}

/* Count one connection from client node to server node on port. */
static void add_connection(struct graph *g, struct u64map *durations, json_t *from, json_t *to,
			   const struct conn *client_view, uint16_t port, int64_t off)
{
	json_t *e = graph_edge(g, node_id(from), node_id(to), "tcp");
	const struct conn *c = client_view;

	json_object_set_new(e, "port", json_integer(port));
	json_count_add(e, "connections", 1);
	graph_seen(e, c->open_ns + off);
	graph_seen(e, c->last_ns + off);
	if (!c->closed)
		return;
	if (c->role == ROLE_SERVER) {
		/* Only the server end was seen: its sent is the client's received. */
		json_count_add(e, "bytes_sent", (json_int_t)c->bytes_received);
		json_count_add(e, "bytes_received", (json_int_t)c->bytes_sent);
	} else {
		json_count_add(e, "bytes_sent", (json_int_t)c->bytes_sent);
		json_count_add(e, "bytes_received", (json_int_t)c->bytes_received);
	}
	if (c->opened) {
		struct samples *s = u64map_get(durations, (uintptr_t)e);

		if (!s) {
			s = calloc(1, sizeof(*s));
			if (!s || u64map_put(durations, (uintptr_t)e, s)) {
				perror("seams: out of memory");
				exit(1);
			}
		}
		s->v = grow(s->v, &s->cap, s->n, sizeof(*s->v));
		s->v[s->n++] = (double)(c->last_ns - c->open_ns) / 1e6;
	}
}

static json_t *remote_node(struct graph *g, const uint8_t addr[16], int port)
{
	char a[64];

	addr_format(addr, -1, a, sizeof(a));
	return graph_external(g, a, port > 0 ? (uint16_t)port : 0);
}

struct conn *conntrack_find(struct conntrack *ct, const uint8_t laddr[16], uint16_t lport,
			    const uint8_t raddr[16], uint16_t rport)
{
	for (size_t i = ct->nconns; i-- > 0;) {
		struct conn *c = ct->conns[i];

		if (c->lport == lport && c->rport == rport && !memcmp(c->laddr, laddr, 16) &&
		    !memcmp(c->raddr, raddr, 16))
			return c;
	}
	return NULL;
}

static uint64_t endpoint_hash(const uint8_t addr[16], uint16_t port)
{
	return fnv1a(fnv1a(FNV_SEED, addr, 16), &port, sizeof(port));
}

/* One server end per local address:port, for conntrack_server(). */
static void index_servers(struct conntrack *ct)
{
	for (size_t i = 0; i < ct->nconns; i++) {
		struct conn *c = ct->conns[i];

		if (c->role == ROLE_SERVER && !u64map_get(&ct->servers, endpoint_hash(c->laddr, c->lport)) &&
		    u64map_put(&ct->servers, endpoint_hash(c->laddr, c->lport), c)) {
			perror("seams: out of memory");
			exit(1);
		}
	}
}

struct service *conntrack_server(struct conntrack *ct, const uint8_t addr[16], uint16_t port)
{
	struct conn *s = u64map_get(&ct->servers, endpoint_hash(addr, port));

	/* A hash collision between two endpoints only costs the lookup. */
	return s && s->lport == port && !memcmp(s->laddr, addr, 16) ? s->svc : NULL;
}

void conntrack_to_graph(struct conntrack *ct, struct graph *g, int64_t off)
{
	struct u64map index = { 0 }, durations = { 0 };
	struct samples *s;
	char buf[96];

	for (size_t i = 0; i < ct->nconns; i++)
		if (ct->conns[i]->role == ROLE_SERVER)
			conntrack_add_listener(ct, ct->conns[i]->laddr, ct->conns[i]->lport);
	/* A connection seen only mid-stream: the end on a listening port serves. */
	for (size_t i = 0; i < ct->nconns; i++) {
		struct conn *c = ct->conns[i];

		if (c->role == ROLE_UNKNOWN)
			c->role = is_listening(ct, c->laddr, c->lport) ? ROLE_SERVER : ROLE_CLIENT;
	}
	index_servers(ct);
	for (size_t i = 0; i < ct->nconns; i++) {
		struct conn *c = ct->conns[i];
		uint64_t h;

		if (c->role != ROLE_SERVER)
			continue;
		addr_format(c->laddr, c->lport, buf, sizeof(buf));
		graph_node_add_string(conntrack_node(g, c->svc), "listens", buf);
		h = tuple_hash(c->laddr, c->lport, c->raddr, c->rport);
		c->next_same_tuple = u64map_get(&index, h);
		if (u64map_put(&index, h, c)) {
			perror("seams: out of memory");
			exit(1);
		}
	}
	for (size_t i = 0; i < ct->nconns; i++) {
		struct conn *c = ct->conns[i], *srv;

		if (c->role != ROLE_CLIENT)
			continue;
		struct service *to;

		srv = find_server(&index, c);
		if (srv)
			srv->matched = true;
		/* A server end opened before the capture and silent during it is
		 * not seen; the service accepting on that address still is. */
		to = srv ? srv->svc : conntrack_server(ct, c->raddr, c->rport);
		add_connection(g, &durations, conntrack_node(g, c->svc),
			       to ? conntrack_node(g, to) : remote_node(g, c->raddr, c->rport),
			       c, c->rport, off);
	}
	for (size_t i = 0; i < ct->nconns; i++) {
		struct conn *c = ct->conns[i];

		if (c->role != ROLE_SERVER || c->matched)
			continue;
		/* Its client had closed before the capture and was never seen:
		 * the server only finished reading and closing.  Drawing it would
		 * invent an external peer; a client still there to read what
		 * the server sent is drawn. */
		if (c->peer_closed && !(c->closed && c->bytes_sent > 1)) {
			ct->client_gone++;
			continue;
		}
		add_connection(g, &durations, remote_node(g, c->raddr, -1), conntrack_node(g, c->svc),
			       c, c->lport, off);
	}
	for (size_t i = 0; i < ct->nfails; i++) {
		struct conn_failure *f = &ct->fails[i];
		struct service *srv = conntrack_server(ct, f->raddr, f->rport);
		json_t *to = srv ? conntrack_node(g, srv) : remote_node(g, f->raddr, f->rport);
		json_t *e = graph_edge(g, node_id(conntrack_node(g, f->svc)), node_id(to), "tcp");

		json_object_set_new(e, "port", json_integer(f->rport));
		if (!json_object_get(e, "connections"))
			json_object_set_new(e, "connections", json_integer(0));
		json_count_add(e, "failed_connections", 1);
		graph_seen(e, f->ts_ns + off);
	}
	u64map_for_each(&durations, i, s) {
		json_object_set_new((json_t *)(uintptr_t)durations.keys[i], "duration_ms",
				    graph_percentiles(s->v, s->n));
		free(s->v);
		free(s);
	}
	u64map_free(&durations);
	u64map_free(&index);
}
