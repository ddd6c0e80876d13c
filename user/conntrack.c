/* Connection tracking.  The kernel reports each end of a connection on its
 * own: a connect() on the client, an accept() on the server, or, for
 * connections already open when tracing began, their first read or write.
 * Ends are joined by 4-tuple as they open.  A closed end waits a moment for
 * its peer (whose accept may be reported late), then is counted on its edge
 * and freed.  A graph is built from the edges plus the connections still
 * open, without changing either. */
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conntrack.h"

const char *const ct_drop_names[DROP_NR] = {
	[DROP_EDGES] = "edges", [DROP_SERVERS] = "servers_per_client",
	[DROP_SERVICES] = "services", [DROP_CONNS] = "connections",
	[DROP_TABLES] = "tables_per_database", [DROP_STATEMENTS] = "statements_per_edge",
	[DROP_SQL_SERIES] = "sql_series", [DROP_NEST] = "nesting",
};

static const uint8_t any6[16];
static const uint8_t any4[16] = { [10] = 0xff, [11] = 0xff };
/* The external peer standing for every edge that did not fit. */
static const uint8_t other_addr[16] = { 0xff, 0xff };

uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

void conntrack_init(struct conntrack *ct)
{
	memset(ct, 0, sizeof(*ct));
	ct->other.name = "~other";
	ct->other.cgroup = "";
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

/* Free a map whose values head hash chains: tcpagg and nestagg both start
 * with their next pointer. */
static void chains_free(struct u64map *m)
{
	struct chain {
		struct chain *next;
	} *a, *next;

	u64map_for_each(m, i, a)
		for (; a; a = next) {
			next = a->next;
			free(a);
		}
	u64map_free(m);
}

void conntrack_free(struct conntrack *ct)
{
	struct service *s;
	struct conn *c;
	struct endpoint *ep;

	u64map_for_each(&ct->open, i, c)
		free(c);
	for (c = ct->closed_head; c;) {
		struct conn *next = c->next_closed;

		free(c);
		c = next;
	}
	u64map_for_each(&ct->services, i, s)
		service_free(s);
	u64map_for_each(&ct->servers, i, ep)
		free(ep);
	chains_free(&ct->aggs);
	chains_free(&ct->nest);
	u64map_free(&ct->closing);
	u64map_free(&ct->services);
	u64map_free(&ct->open);
	u64map_free(&ct->tuples);
	u64map_free(&ct->servers);
	u64map_free(&ct->listeners);
	memset(ct, 0, sizeof(*ct));
}

static void add_proc(struct service *s, const char *comm)
{
	char **procs;
	char *p;

	if (!comm || !*comm || s->nprocs == CT_MAX_PROCS)
		return;
	for (size_t i = 0; i < s->nprocs; i++)
		if (!strcmp(s->procs[i], comm))
			return;
	procs = realloc(s->procs, (s->nprocs + 1) * sizeof(*s->procs));
	if (!procs)
		return;
	s->procs = procs;
	p = strdup(comm);
	if (p)
		s->procs[s->nprocs++] = p;
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
		if (ct->services.len >= CT_MAX_SERVICES) {
			ct->dropped[DROP_SERVICES]++;
			return &ct->other;
		}
		s = calloc(1, sizeof(*s));
		if (s) {
			s->name = strdup(name);
			s->cgroup = strdup(cgroup ? cgroup : "");
		}
		if (!s || !s->name || !s->cgroup || u64map_put(&ct->services, h, s)) {
			if (s)
				service_free(s);
			ct->dropped[DROP_SERVICES]++;
			return &ct->other;
		}
	}
	s->last_ns = ct->now_ns;
	add_proc(s, comm);
	return s;
}

static uint64_t tuple_hash(const uint8_t la[16], uint16_t lp, const uint8_t ra[16], uint16_t rp)
{
	uint64_t h = fnv1a(FNV_SEED, la, 16);

	h = fnv1a(h, &lp, sizeof(lp));
	h = fnv1a(h, ra, 16);
	return fnv1a(h, &rp, sizeof(rp));
}

static uint64_t endpoint_hash(const uint8_t addr[16], uint16_t port)
{
	return fnv1a(fnv1a(FNV_SEED, addr, 16), &port, sizeof(port));
}

struct conn *conntrack_find(const struct conntrack *ct, const uint8_t laddr[16], uint16_t lport,
			    const uint8_t raddr[16], uint16_t rport)
{
	struct conn *c = u64map_get(&ct->tuples, tuple_hash(laddr, lport, raddr, rport)), *closed = NULL;

	/* An end still open before one that closed and waits to fold: the
	 * tuple may have been reused since. */
	for (; c; c = c->next_tuple)
		if (c->lport == lport && c->rport == rport && !memcmp(c->laddr, laddr, 16) &&
		    !memcmp(c->raddr, raddr, 16)) {
			if (!c->closed)
				return c;
			closed = closed ? closed : c;
		}
	return closed;
}

static void tuple_unlink(struct conntrack *ct, struct conn *c)
{
	uint64_t h = tuple_hash(c->laddr, c->lport, c->raddr, c->rport);
	struct conn *head = u64map_get(&ct->tuples, h), **pp;

	if (head == c) {
		/* Out of memory the rest of the chain is forgotten (those ends
		 * can no longer be joined), never left pointing at c. */
		if (!c->next_tuple || u64map_put(&ct->tuples, h, c->next_tuple))
			u64map_del(&ct->tuples, h);
		return;
	}
	for (pp = &head; *pp; pp = &(*pp)->next_tuple)
		if (*pp == c) {
			*pp = c->next_tuple;
			return;
		}
}

static void remember_server(struct conntrack *ct, const struct conn *c)
{
	uint64_t h = endpoint_hash(c->laddr, c->lport);
	struct endpoint *ep = u64map_get(&ct->servers, h);

	if (!ep) {
		ep = calloc(1, sizeof(*ep));
		if (!ep || u64map_put(&ct->servers, h, ep)) {
			free(ep);
			return;
		}
	}
	memcpy(ep->addr, c->laddr, 16);
	ep->port = c->lport;
	ep->svc = c->svc;
	ep->last_ns = c->open_ns;
}

struct service *conntrack_server(const struct conntrack *ct, const uint8_t addr[16], uint16_t port)
{
	struct endpoint *ep = u64map_get(&ct->servers, endpoint_hash(addr, port));

	/* A hash collision between two endpoints only costs the lookup. */
	return ep && ep->port == port && !memcmp(ep->addr, addr, 16) ? ep->svc : NULL;
}

static bool is_listening(const struct conntrack *ct, const uint8_t addr[16], uint16_t port)
{
	/* A wildcard listener takes any local address; "::" takes IPv4 too. */
	return conntrack_server(ct, addr, port) ||
	       u64map_get(&ct->listeners, endpoint_hash(addr, port)) ||
	       u64map_get(&ct->listeners, endpoint_hash(any6, port)) ||
	       (!memcmp(addr, any4, 12) && u64map_get(&ct->listeners, endpoint_hash(any4, port)));
}

static void open_conn(struct conntrack *ct, const struct conn_event *e, struct service *svc)
{
	struct conn *c, *old, *peer;
	uint64_t h;

	/* A socket address is reused only after its close, which we may have
	 * missed: the newer connection replaces the older. */
	old = u64map_get(&ct->open, e->sock);
	if (old) {
		u64map_del(&ct->open, e->sock);
		tuple_unlink(ct, old);
		if (old->peer)
			old->peer->peer = NULL;
		free(old);
	}
	if (ct->open.len >= CT_MAX_OPEN || !(c = calloc(1, sizeof(*c)))) {
		ct->dropped[DROP_CONNS]++;
		return;
	}
	c->svc = svc ? svc : &ct->other;
	c->sock = e->sock;
	c->tgid = e->tgid;
	c->open_ns = c->last_ns = e->ts_ns;
	memcpy(c->laddr, e->laddr, 16);
	memcpy(c->raddr, e->raddr, 16);
	c->lport = e->lport;
	c->rport = e->rport;
	c->role = e->type == EV_CONNECT ? ROLE_CLIENT : e->type == EV_ACCEPT ? ROLE_SERVER : ROLE_UNKNOWN;
	c->opened = e->type != EV_SEEN;
	c->peer_closed = e->type == EV_SEEN && e->peer_closed;
	if (u64map_put(&ct->open, e->sock, c)) {
		free(c);
		ct->dropped[DROP_CONNS]++;
		return;
	}
	h = tuple_hash(c->laddr, c->lport, c->raddr, c->rport);
	c->next_tuple = u64map_get(&ct->tuples, h);
	if (u64map_put(&ct->tuples, h, c))
		c->next_tuple = NULL; /* unjoinable, still counted on its own */
	peer = conntrack_find(ct, c->raddr, c->rport, c->laddr, c->lport);
	if (peer && !peer->peer && !peer->closed) {
		c->peer = peer;
		peer->peer = c;
		/* One end's role tells the other's, for ends seen mid-stream. */
		if (c->role == ROLE_UNKNOWN && peer->role != ROLE_UNKNOWN)
			c->role = peer->role == ROLE_CLIENT ? ROLE_SERVER : ROLE_CLIENT;
		else if (peer->role == ROLE_UNKNOWN && c->role != ROLE_UNKNOWN)
			peer->role = c->role == ROLE_CLIENT ? ROLE_SERVER : ROLE_CLIENT;
		if (peer->role == ROLE_SERVER)
			remember_server(ct, peer);
	}
	/* Mid-stream ends: a listening local port says which end serves, and a
	 * server known early names the server of the PostgreSQL statements on
	 * the connection. */
	if (c->role == ROLE_UNKNOWN && is_listening(ct, c->laddr, c->lport)) {
		c->role = ROLE_SERVER;
		if (c->peer && c->peer->role == ROLE_UNKNOWN)
			c->peer->role = ROLE_CLIENT;
	}
	/* Both ends here, seen mid-stream, and no listener known (it may be in
	 * another network namespace): the lower port serves, as ephemeral
	 * ports are high.  Counting both as clients would count it twice. */
	if (c->role == ROLE_UNKNOWN && c->peer && c->peer->role == ROLE_UNKNOWN) {
		c->role = c->lport < c->rport ? ROLE_SERVER : ROLE_CLIENT;
		c->peer->role = c->role == ROLE_SERVER ? ROLE_CLIENT : ROLE_SERVER;
		if (c->peer->role == ROLE_SERVER)
			remember_server(ct, c->peer);
	}
	if (c->role == ROLE_SERVER)
		remember_server(ct, c);
}

static uint64_t key_hash(const struct tcpkey *k)
{
	uint64_t h = fnv1a(FNV_SEED, &k->client, sizeof(k->client));

	h = fnv1a(h, &k->server, sizeof(k->server));
	h = fnv1a(h, k->addr, 16);
	return fnv1a(h, &k->port, sizeof(k->port));
}

static bool key_eq(const struct tcpkey *a, const struct tcpkey *b)
{
	return a->client == b->client && a->server == b->server && a->port == b->port &&
	       !memcmp(a->addr, b->addr, 16);
}

static struct tcpagg *agg_lookup(const struct u64map *m, const struct tcpkey *k)
{
	struct tcpagg *a = u64map_get(m, key_hash(k));

	for (; a; a = a->next)
		if (key_eq(&a->key, k))
			return a;
	return NULL;
}

static struct tcpagg *agg_insert(struct u64map *m, const struct tcpkey *k)
{
	uint64_t h = key_hash(k);
	struct tcpagg *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->key = *k;
	a->next = u64map_get(m, h);
	if (u64map_put(m, h, a)) {
		free(a);
		return NULL;
	}
	return a;
}

/* The aggregate for k, created when it fits: past a limit, or out of
 * memory, the client's edge to "~other" (or one "~other" edge) instead. */
static struct tcpagg *agg_get(struct conntrack *ct, struct tcpkey *k)
{
	struct tcpagg *a = agg_lookup(&ct->aggs, k);
	struct service *client = k->client;

	if (a)
		return a;
	if (client && client->nservers >= CT_MAX_SERVERS) {
		ct->dropped[DROP_SERVERS]++;
		*k = (struct tcpkey){ .client = client };
		memcpy(k->addr, other_addr, 16);
		if ((a = agg_lookup(&ct->aggs, k)))
			return a;
	}
	if (ct->naggs >= CT_MAX_EDGES || !(a = agg_insert(&ct->aggs, k))) {
		ct->dropped[DROP_EDGES]++;
		*k = (struct tcpkey){ .client = &ct->other };
		memcpy(k->addr, other_addr, 16);
		a = agg_lookup(&ct->aggs, k);
		if (!a && (a = agg_insert(&ct->aggs, k)))
			ct->naggs++;
		return a;
	}
	ct->naggs++;
	if (client)
		client->nservers++;
	return a;
}

static void stats_seen(struct tcpstats *s, uint64_t t)
{
	if (!s->first_ns || t < s->first_ns)
		s->first_ns = t;
	if (t > s->last_ns)
		s->last_ns = t;
}

/* The edge of a client's end.  A server end opened before tracing and
 * silent since is not seen; the service accepting on that address still is. */
static void client_key(const struct conntrack *ct, const struct conn *c, struct tcpkey *k)
{
	k->client = c->svc;
	k->server = c->peer ? c->peer->svc : conntrack_server(ct, c->raddr, c->rport);
	if (!k->server)
		memcpy(k->addr, c->raddr, 16);
	k->port = c->rport;
}

/* The edge an end counts on, or false when it does not count: a server end
 * whose client end here counts it, or whose client left before we looked. */
static bool conn_key(const struct conntrack *ct, const struct conn *c, struct tcpkey *k,
		     int *rolep, bool *client_gone)
{
	int role = c->role;

	*client_gone = false;
	memset(k, 0, sizeof(*k));
	/* Its other end here counted the connection already. */
	if (c->peer_counted)
		return false;
	if (role == ROLE_UNKNOWN)
		role = is_listening(ct, c->laddr, c->lport) ? ROLE_SERVER : ROLE_CLIENT;
	*rolep = role;
	if (role == ROLE_CLIENT) {
		client_key(ct, c, k);
		return true;
	}
	if (c->peer_counted || (c->peer && c->peer->role != ROLE_SERVER))
		return false;
	/* Its client had closed before we looked: the server only finished
	 * reading and closing.  Drawing it would invent an external peer; a
	 * client still there to read what the server sent is drawn. */
	if (c->peer_closed && !(c->closed && c->bytes_sent > 1)) {
		*client_gone = true;
		return false;
	}
	k->server = c->svc;
	memcpy(k->addr, c->raddr, 16);
	k->port = c->lport;
	return true;
}

static void count_conn(struct tcpstats *s, const struct conn *c, int role)
{
	s->connections++;
	stats_seen(s, c->open_ns);
	stats_seen(s, c->last_ns);
	if (!c->closed)
		return;
	s->requests += c->exchanges;
	if (role == ROLE_SERVER) {
		/* Only the server end was seen: its sent is the client's received. */
		s->bytes_sent += c->bytes_received;
		s->bytes_received += c->bytes_sent;
	} else {
		s->bytes_sent += c->bytes_sent;
		s->bytes_received += c->bytes_received;
	}
	if (c->opened)
		hist_add(&s->duration, c->last_ns - c->open_ns);
}

static void free_conn(struct conntrack *ct, struct conn *c)
{
	tuple_unlink(ct, c);
	if (c->peer)
		c->peer->peer = NULL;
	free(c);
}

static void fold(struct conntrack *ct, struct conn *c)
{
	struct tcpkey k;
	struct tcpagg *a;
	bool gone;
	int role;

	if (conn_key(ct, c, &k, &role, &gone) && (a = agg_get(ct, &k))) {
		for (int w = 0; w < STAT_NR; w++)
			count_conn(&a->st[w], c, role);
		if (c->peer)
			c->peer->peer_counted = true;
	}
	ct->client_gone += gone;
	if (u64map_get(&ct->closing, c->sock) == c)
		u64map_del(&ct->closing, c->sock);
	free_conn(ct, c);
}

static void close_conn(struct conntrack *ct, const struct conn_event *e)
{
	struct conn *c = u64map_del(&ct->open, e->sock);

	if (!c)
		return;
	c->closed = true;
	c->last_ns = e->ts_ns;
	c->bytes_sent = e->bytes_sent;
	c->bytes_received = e->bytes_received;
	c->exchanges = e->exchanges;
	/* Out of memory, nesting events cannot find it: they count that. */
	u64map_put(&ct->closing, e->sock, c);
	if (ct->closed_tail)
		ct->closed_tail->next_closed = c;
	else
		ct->closed_head = c;
	ct->closed_tail = c;
	ct->nclosed++;
}

static void connect_failed(struct conntrack *ct, const struct conn_event *e, struct service *svc)
{
	struct tcpkey k = { .client = svc ? svc : &ct->other, .port = e->rport };
	struct tcpagg *a;

	k.server = conntrack_server(ct, e->raddr, e->rport);
	if (!k.server)
		memcpy(k.addr, e->raddr, 16);
	a = agg_get(ct, &k);
	if (!a)
		return;
	for (int w = 0; w < STAT_NR; w++) {
		a->st[w].failed++;
		stats_seen(&a->st[w], e->ts_ns);
	}
}

/* ---- request nesting -------------------------------------------------- */

/* The edge a connection end belongs to, whichever end counts it. */
static void end_key(const struct conntrack *ct, const struct conn *c, bool server, struct tcpkey *k)
{
	memset(k, 0, sizeof(*k));
	if (!server) {
		client_key(ct, c, k);
	} else if (c->peer) {
		k->client = c->peer->svc;
		k->server = c->svc;
		k->port = c->lport;
	} else {
		k->server = c->svc;
		memcpy(k->addr, c->raddr, 16);
		k->port = c->lport;
	}
}

/* The end that was sock at time t: open, or closed and waiting to fold (a
 * call's connection often closes before the request it served replies).
 * The kernel reuses a socket's address at once, so an end opened after t,
 * or closed before it, is another connection: none is better than it. */
static struct conn *end_at(const struct conntrack *ct, uint64_t sock, uint64_t t)
{
	struct conn *c = u64map_get(&ct->open, sock);

	if (c && c->open_ns <= t)
		return c;
	c = u64map_get(&ct->closing, sock);
	return c && c->open_ns <= t && c->last_ns >= t ? c : NULL;
}

static uint64_t nestkey_hash(const struct nestkey *k)
{
	return fnv1a(key_hash(&k->in), &(uint64_t){ key_hash(&k->out) }, sizeof(uint64_t));
}

static struct nestagg *nest_get(struct conntrack *ct, const struct nestkey *k)
{
	uint64_t h = nestkey_hash(k);
	struct nestagg *a = u64map_get(&ct->nest, h);

	for (; a; a = a->next)
		if (key_eq(&a->key.in, &k->in) && key_eq(&a->key.out, &k->out))
			return a;
	if (ct->nnest >= CT_MAX_NEST || !(a = calloc(1, sizeof(*a)))) {
		ct->dropped[DROP_NEST]++;
		return NULL;
	}
	a->key = *k;
	a->next = u64map_get(&ct->nest, h);
	if (u64map_put(&ct->nest, h, a)) {
		free(a);
		ct->dropped[DROP_NEST]++;
		return NULL;
	}
	ct->nnest++;
	return a;
}

/* The calls of one request, merged per outbound edge: two connections to
 * one service are one hop. */
struct hop {
	struct tcpkey k;
	uint64_t busy_ns;
	uint64_t calls;
	bool unreplied;
};

static bool nest_valid(const struct nest_event *e)
{
	if (e->ts_ns < e->start_ns || e->ncalls > SEAMS_NEST_CALLS)
		return false;
	for (uint32_t i = 0; i < e->ncalls; i++) {
		const struct nest_call *c = &e->calls[i];

		if (!c->calls || c->pending > 1 || c->busy_ns > e->ts_ns - e->start_ns ||
		    c->start_ns < e->start_ns || c->start_ns > e->ts_ns)
			return false;
	}
	return true;
}

void conntrack_nest(struct conntrack *ct, const struct nest_event *e)
{
	struct hop hops[SEAMS_NEST_CALLS];
	struct nestkey nk;
	struct nestagg *a;
	struct conn *in;
	size_t nhops = 0;
	bool ambiguous = e->flags & NEST_OVERLAP;

	if (e->ts_ns > ct->now_ns)
		ct->now_ns = e->ts_ns;
	/* Out of order, or more busy time than the request took: counted,
	 * never guessed at. */
	if (!nest_valid(e)) {
		ct->nestbad.invalid++;
		return;
	}
	in = end_at(ct, e->sock, e->start_ns);
	if (!in || in->role == ROLE_CLIENT) {
		ct->nestbad.unresolved++;
		return;
	}
	memset(&nk, 0, sizeof(nk));
	end_key(ct, in, true, &nk.in);
	ct->nestbad.calls_overflow += e->overflow;
	for (uint32_t i = 0; !ambiguous && i < e->ncalls; i++) {
		const struct nest_call *c = &e->calls[i];
		/* Its last send: the connection was open then. */
		struct conn *out = end_at(ct, c->sock, c->start_ns);
		struct tcpkey k;
		size_t j;

		/* A server end seen mid-stream is no call made. */
		if (!out || out == in || out->role == ROLE_SERVER) {
			ct->nestbad.calls_unresolved++;
			continue;
		}
		end_key(ct, out, false, &k);
		for (j = 0; j < nhops && !key_eq(&hops[j].k, &k); j++)
			;
		if (j == nhops)
			hops[nhops++] = (struct hop){ .k = k };
		hops[j].busy_ns += c->busy_ns;
		hops[j].calls += c->calls;
		/* Its last call on this edge got no reply in time: unreplied. */
		hops[j].unreplied |= c->pending && c->calls == 1;
	}
	if ((a = nest_get(ct, &nk)))
		for (int w = 0; w < STAT_NR; w++) {
			a->st[w].requests++;
			a->st[w].last_ns = e->ts_ns;
			if (ambiguous)
				a->st[w].ambiguous++;
			else
				hist_add(&a->st[w].latency, e->ts_ns - e->start_ns);
		}
	for (size_t j = 0; j < nhops; j++) {
		nk.out = hops[j].k;
		if (!(a = nest_get(ct, &nk)))
			continue;
		for (int w = 0; w < STAT_NR; w++) {
			a->st[w].requests++;
			a->st[w].calls += hops[j].calls;
			a->st[w].last_ns = e->ts_ns;
			if (hops[j].unreplied)
				a->st[w].unreplied++;
			else
				hist_add(&a->st[w].latency, hops[j].busy_ns);
		}
	}
}

void conntrack_for_each_nest(const struct conntrack *ct, void (*fn)(void *ctx, const struct nestagg *a),
			     void *ctx)
{
	struct nestagg *a;

	u64map_for_each(&ct->nest, i, a)
		for (; a; a = a->next)
			fn(ctx, a);
}

void conntrack_event(struct conntrack *ct, const struct conn_event *e, struct service *svc)
{
	if (e->ts_ns > ct->now_ns)
		ct->now_ns = e->ts_ns;
	switch (e->type) {
	case EV_CONNECT:
	case EV_ACCEPT:
	case EV_SEEN:
		open_conn(ct, e, svc);
		break;
	case EV_CLOSE:
		close_conn(ct, e);
		break;
	case EV_CONNECT_FAIL:
		connect_failed(ct, e, svc);
		break;
	}
}

void conntrack_tick(struct conntrack *ct, uint64_t now_ns)
{
	if (now_ns > ct->now_ns)
		ct->now_ns = now_ns;
	while (ct->closed_head && ct->closed_head->last_ns + CT_LINGER_NS <= now_ns) {
		struct conn *c = ct->closed_head;

		ct->closed_head = c->next_closed;
		if (!ct->closed_head)
			ct->closed_tail = NULL;
		ct->nclosed--;
		fold(ct, c);
	}
}

void conntrack_window_reset(struct conntrack *ct)
{
	struct tcpagg *a;
	struct nestagg *n;

	u64map_for_each(&ct->aggs, i, a)
		for (; a; a = a->next)
			memset(&a->st[STAT_WINDOW], 0, sizeof(a->st[STAT_WINDOW]));
	u64map_for_each(&ct->nest, i, n)
		for (; n; n = n->next)
			memset(&n->st[STAT_WINDOW], 0, sizeof(n->st[STAT_WINDOW]));
}

static void mark(struct service *s)
{
	if (s)
		s->mark = true;
}

static void mark(struct service *s);

/* Like the edges: rebuilt with what is still in use, marking its services. */
static void evict_nest(struct conntrack *ct, uint64_t cutoff)
{
	struct u64map keep = { 0 };
	struct nestagg *a, *next;
	size_t n = 0;

	u64map_for_each(&ct->nest, i, a)
		for (; a; a = next) {
			next = a->next;
			if (a->st[STAT_TOTAL].last_ns < cutoff) {
				ct->evicted++;
				free(a);
				continue;
			}
			a->next = u64map_get(&keep, ct->nest.keys[i]);
			if (u64map_put(&keep, ct->nest.keys[i], a)) {
				free(a);
				ct->dropped[DROP_NEST]++;
				continue;
			}
			n++;
			mark(a->key.in.client);
			mark(a->key.in.server);
			mark(a->key.out.client);
			mark(a->key.out.server);
		}
	u64map_free(&ct->nest);
	ct->nest = keep;
	ct->nnest = n;
}

void conntrack_evict(struct conntrack *ct, uint64_t cutoff)
{
	struct u64map keep = { 0 };
	struct tcpagg *a, *next;
	struct endpoint *ep;
	struct service *s;
	struct conn *c;
	size_t n = 0;

	u64map_for_each(&ct->services, i, s) {
		s->mark = false;
		s->nservers = 0;
	}
	ct->other.mark = false;
	ct->other.nservers = 0;
	/* Rebuild the aggregate index with the ones still in use: chains make
	 * deleting in place awkward, and a sweep runs once a minute at most. */
	u64map_for_each(&ct->aggs, i, a)
		for (; a; a = next) {
			next = a->next;
			if (a->st[STAT_TOTAL].last_ns < cutoff) {
				ct->evicted++;
				free(a);
				continue;
			}
			a->next = u64map_get(&keep, ct->aggs.keys[i]);
			if (u64map_put(&keep, ct->aggs.keys[i], a)) {
				free(a); /* out of memory: its counts are lost, and counted */
				ct->dropped[DROP_EDGES]++;
				continue;
			}
			n++;
			mark(a->key.client);
			mark(a->key.server);
			if (a->key.client)
				a->key.client->nservers++;
		}
	u64map_free(&ct->aggs);
	ct->aggs = keep;
	ct->naggs = n;
	evict_nest(ct, cutoff);
	u64map_for_each(&ct->servers, i, ep) {
		if (ep->last_ns < cutoff && ep->svc->last_ns < cutoff) {
			u64map_del(&ct->servers, ct->servers.keys[i]);
			free(ep);
			continue;
		}
		mark(ep->svc);
	}
	u64map_for_each(&ct->open, i, c)
		mark(c->svc);
	for (c = ct->closed_head; c; c = c->next_closed)
		mark(c->svc);
}

void conntrack_sweep_services(struct conntrack *ct, uint64_t cutoff)
{
	struct service *s;

	u64map_for_each(&ct->services, i, s) {
		if (s->mark || s->last_ns >= cutoff)
			continue;
		u64map_del(&ct->services, ct->services.keys[i]);
		service_free(s);
		ct->evicted++;
	}
}

size_t conntrack_open_count(const struct conntrack *ct)
{
	return ct->open.len;
}

void conntrack_add_listener(struct conntrack *ct, const uint8_t addr[16], uint16_t port)
{
	u64map_put(&ct->listeners, endpoint_hash(addr, port), (void *)1);
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

/* The listening TCP sockets of one family from the kernel's socket
 * diagnostics, asking for TCP_LISTEN only: the kernel then walks its
 * listening table alone.  /proc/net/tcp walks every bucket of the
 * established table (hundreds of thousands, mostly empty) on each read.
 * Non-zero when the interface is not there. */
static int load_listeners_diag(struct conntrack *ct, int family)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 req;
	} msg = {
		.nh = { .nlmsg_len = sizeof(msg), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
		.req = { .sdiag_family = family, .sdiag_protocol = IPPROTO_TCP,
			 .idiag_states = 1u << TCP_LISTEN },
	};
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
	long buf[8192 / sizeof(long)];
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG), done = 0;

	if (fd < 0)
		return -1;
	if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0) {
		close(fd);
		return -1;
	}
	while (!done) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (n <= 0)
			break;
		for (; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			struct inet_diag_msg *d = NLMSG_DATA(h);
			uint8_t addr[16] = { 0 };

			if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
				done = h->nlmsg_type == NLMSG_DONE ? 1 : -1;
				break;
			}
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*d)) || d->idiag_state != TCP_LISTEN)
				continue;
			if (family == AF_INET) {
				addr[10] = addr[11] = 0xff;
				memcpy(addr + 12, d->id.idiag_src, 4);
			} else {
				memcpy(addr, d->id.idiag_src, 16);
			}
			conntrack_add_listener(ct, addr, ntohs(d->id.idiag_sport));
		}
	}
	close(fd);
	return done == 1 ? 0 : -1;
}

int conntrack_load_listeners(struct conntrack *ct)
{
	u64map_free(&ct->listeners);
	if (load_listeners_diag(ct, AF_INET) || load_listeners_diag(ct, AF_INET6)) {
		/* No socket diagnostics (a kernel without inet_diag): the files. */
		u64map_free(&ct->listeners);
		load_listeners_file(ct, "/proc/net/tcp", 1);
		load_listeners_file(ct, "/proc/net/tcp6", 4);
	}
	return 0;
}

void addr_format(const uint8_t addr[16], int port, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	bool v4 = !memcmp(addr, any4, 12);

	if (!memcmp(addr, other_addr, 16))
		snprintf(a, sizeof(a), "~other");
	else if (v4)
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

/* ---- reading: graphs and metrics ------------------------------------------ */

void conntrack_for_each_edge(const struct conntrack *ct, int which,
			     void (*fn)(void *ctx, const struct tcpagg *a), void *ctx)
{
	struct u64map live = { 0 };
	struct tcpagg *a, *t, *next;
	struct conn *c;
	struct tcpkey k;
	bool gone;
	int role;

	/* Open and waiting ends count as if they closed now, on copies of
	 * their aggregates: reading never changes what is read. */
	for (int pass = 0; pass < 2; pass++) {
		const struct u64map *src = pass ? NULL : &ct->open;

		for (size_t i = 0;; i++) {
			if (src) {
				if (i >= src->cap)
					break;
				if (!(c = u64map_slot(src, i)))
					continue;
			} else {
				c = i ? c->next_closed : ct->closed_head;
				if (!c)
					break;
			}
			if (!conn_key(ct, c, &k, &role, &gone))
				continue;
			t = agg_lookup(&live, &k);
			if (!t) {
				t = agg_insert(&live, &k);
				if (!t)
					continue;
				a = agg_lookup(&ct->aggs, &k);
				if (a)
					t->st[which] = a->st[which];
			}
			count_conn(&t->st[which], c, role);
		}
	}
	u64map_for_each(&ct->aggs, i, a)
		for (; a; a = a->next)
			if (!agg_lookup(&live, &a->key))
				fn(ctx, a);
	u64map_for_each(&live, i, t)
		for (; t; t = next) {
			next = t->next;
			fn(ctx, t);
		}
	chains_free(&live);
}

uint64_t conntrack_client_gone(const struct conntrack *ct)
{
	uint64_t n = ct->client_gone;
	struct conn *c;
	struct tcpkey k;
	bool gone;
	int role;

	for (c = ct->closed_head; c; c = c->next_closed) {
		conn_key(ct, c, &k, &role, &gone);
		n += gone;
	}
	return n;
}

json_t *conntrack_node(struct graph *g, const struct service *s)
{
	json_t *node = graph_service(g, s->name, s->cgroup);

	for (size_t i = 0; i < s->nprocs; i++)
		graph_node_add_string(node, "processes", s->procs[i]);
	return node;
}

json_t *conntrack_remote_node(struct graph *g, const uint8_t addr[16], int port)
{
	char a[64];

	addr_format(addr, -1, a, sizeof(a));
	return graph_external(g, a, port > 0 ? (uint16_t)port : 0);
}

struct render {
	struct graph *g;
	int which;
	int64_t off;
	struct u64map hists; /* edge json -> merged duration histogram */
	struct u64map nest_hists; /* nesting json -> merged latency histogram */
};

static const char *node_id(json_t *node)
{
	return json_string_value(json_object_get(node, "id"));
}

static void render_edge(void *ctx, const struct tcpagg *a)
{
	struct render *r = ctx;
	const struct tcpstats *s = &a->st[r->which];
	json_t *from, *to, *e;

	if (!s->connections && !s->failed)
		return;
	from = a->key.client ? conntrack_node(r->g, a->key.client) : conntrack_remote_node(r->g, a->key.addr, -1);
	to = a->key.server ? conntrack_node(r->g, a->key.server) :
			     conntrack_remote_node(r->g, a->key.addr, a->key.port);
	e = graph_edge(r->g, node_id(from), node_id(to), "tcp");
	json_object_set_new(e, "port", json_integer(a->key.port));
	json_count_add(e, "connections", (json_int_t)s->connections);
	if (s->failed)
		json_count_add(e, "failed_connections", (json_int_t)s->failed);
	if (s->requests)
		json_count_add(e, "requests", (json_int_t)s->requests);
	if (s->bytes_sent || s->bytes_received) {
		json_count_add(e, "bytes_sent", (json_int_t)s->bytes_sent);
		json_count_add(e, "bytes_received", (json_int_t)s->bytes_received);
	}
	if (s->first_ns) {
		graph_seen(e, s->first_ns + r->off);
		graph_seen(e, s->last_ns + r->off);
	}
	if (s->duration.count)
		graph_edge_hist_merge(&r->hists, e, &s->duration);
}

/* The id render_edge gave one end of k, without creating the node. */
static void key_node_id(const struct tcpkey *k, bool server, char *buf, size_t len)
{
	const struct service *s = server ? k->server : k->client;
	char a[64], ep[96];

	if (s) {
		snprintf(buf, len, "svc:%s", s->name);
		return;
	}
	addr_format(k->addr, -1, a, sizeof(a));
	if (server && k->port)
		graph_format_endpoint(a, k->port, ep, sizeof(ep));
	else
		snprintf(ep, sizeof(ep), "%s", a);
	snprintf(buf, len, "ext:%s", ep);
}

/* k's edge if it is drawn; target (>= 160 bytes) gets its target's id. */
static json_t *key_edge(struct graph *g, const struct tcpkey *k, char *target)
{
	char from[160];

	key_node_id(k, false, from, sizeof(from));
	key_node_id(k, true, target, 160);
	return graph_find_edge(g, from, target, "tcp");
}

/* An inbound edge's "nesting": its requests, and per callee the requests
 * that called it.  The edge is drawn already; one that is not (idle in this
 * window) gets none. */
static void render_nest(void *ctx, const struct nestagg *a)
{
	static const struct tcpkey none;
	struct render *r = ctx;
	const struct neststats *s = &a->st[r->which];
	char target[160];
	json_t *e, *n, *calls, *c;

	if (!s->requests || !(e = key_edge(r->g, &a->key.in, target)))
		return;
	n = json_object_get(e, "nesting");
	if (!n) {
		n = json_object();
		json_object_set_new(e, "nesting", n);
	}
	if (!memcmp(&a->key.out, &none, sizeof(none))) {
		json_count_add(n, "requests", (json_int_t)s->requests);
		if (s->ambiguous)
			json_count_add(n, "ambiguous", (json_int_t)s->ambiguous);
		if (s->latency.count)
			graph_edge_hist_merge(&r->nest_hists, n, &s->latency);
		return;
	}
	if (!key_edge(r->g, &a->key.out, target))
		return;
	calls = json_object_get(n, "calls");
	if (!calls) {
		calls = json_object();
		json_object_set_new(n, "calls", calls);
	}
	c = json_object_get(calls, target);
	if (!c) {
		c = json_object();
		json_object_set_new(calls, target, c);
	}
	json_count_add(c, "requests", (json_int_t)s->requests);
	json_count_add(c, "calls", (json_int_t)s->calls);
	if (s->unreplied)
		json_count_add(c, "unreplied", (json_int_t)s->unreplied);
	if (s->latency.count)
		graph_edge_hist_merge(&r->nest_hists, c, &s->latency);
}

void conntrack_to_graph(const struct conntrack *ct, struct graph *g, int which, int64_t off)
{
	struct render r = { .g = g, .which = which, .off = off };
	struct endpoint *ep;
	char buf[96];

	u64map_for_each(&ct->servers, i, ep) {
		addr_format(ep->addr, ep->port, buf, sizeof(buf));
		graph_node_add_string(conntrack_node(g, ep->svc), "listens", buf);
	}
	conntrack_for_each_edge(ct, which, render_edge, &r);
	graph_edge_hists_finish(&r.hists, "duration_ms");
	conntrack_for_each_nest(ct, render_nest, &r);
	graph_edge_hists_finish(&r.nest_hists, "latency_ms");
}
