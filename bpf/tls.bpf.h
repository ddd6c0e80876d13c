/* PostgreSQL over TLS: the plaintext, taken where the client hands it to
 * OpenSSL (SSL_write) or gets it back (SSL_read), framed like a plain
 * connection's bytes.  The collector attaches these uprobes per process,
 * to traced processes only.
 *
 * Uprobes cannot reach a socket's sk_storage, so the call is tied to its
 * socket from the socket side: a send or receive that happens inside an
 * SSL call on the same thread belongs to that SSL.  libpq's socket BIO
 * does its I/O inside SSL_read and SSL_write.  Node's memory BIO does not:
 * there the socket this thread last moved PostgreSQL bytes on (the one whose
 * received bytes it is decrypting) stands in, once per SSL. */
#ifndef SEAMS_TLS_BPF_H
#define SEAMS_TLS_BPF_H

/* Only set for processes that have ever called SSL_read or SSL_write. */
struct tls_thread {
	__u64 ssl;      /* the SSL * of the call in progress; 0: none */
	__u64 buf;
	__u64 outp;     /* _ex calls: where the library puts the byte count */
	__u64 sk_in;    /* the socket the call moved bytes on */
	__u64 last_sk;  /* the PostgreSQL socket this thread last moved bytes on */
	__u8 dir;
	__u8 sk_in_pg;
	__u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);   /* pid_tgid */
	__type(value, struct tls_thread);
} tls_threads SEC(".maps");

/* SSL * (an address in its process) -> socket. */
struct tls_key {
	__u64 ssl;
	__u32 tgid;
	__u32 pad;
};

struct tls_sock {
	__u64 sk;
	__u8 pg;        /* a PostgreSQL client socket: its plaintext is framed */
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tls_key);
	__type(value, struct tls_sock);
} tls_socks SEC(".maps");

/* A TCP socket's plaintext stream; removed at its close. */
struct tls_stream {
	struct pg_state ps;
	__u8 opened;    /* EV_PG_OPEN sent */
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_stream);
} tls_streams SEC(".maps");

/* Set once any traced thread has entered an SSL call: until then, a send
 * or receive on a traced socket skips the per-thread lookup (a host with
 * no TLS clients pays nothing for it). */
__u32 tls_entered = 0;

static __always_inline void tls_close(__u64 sk)
{
	bpf_map_delete_elem(&tls_streams, &sk);
}

/* A send or receive on a traced TCP socket: tie it to the SSL call in
 * progress on this thread, if any.  Such bytes, and any bytes of a socket
 * whose plaintext is followed, are ciphertext: left out, not lost. */
static __always_inline void tls_io(struct sock *sk, struct sockinfo *si)
{
	__u64 id = bpf_get_current_pid_tgid(), key = (__u64)sk;
	struct tls_thread *t = bpf_map_lookup_elem(&tls_threads, &id);
	bool pg = si->kind == SK_PG;

	if (!t)
		return;
	if (pg)
		t->last_sk = key;
	if (t->ssl) {
		t->sk_in = key;
		t->sk_in_pg = pg;
	}
	if (pg && !si->tls && (t->ssl || bpf_map_lookup_elem(&tls_streams, &key)))
		si->tls = 1;
}

static __always_inline int tls_enter(void *ssl, const void *buf, void *outp, __u32 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_thread *t, fresh = {};

	if (!capturing || !traced_task())
		return 0;
	if (!tls_entered)
		tls_entered = 1;
	t = bpf_map_lookup_elem(&tls_threads, &id);
	if (!t) {
		bpf_map_update_elem(&tls_threads, &id, &fresh, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&tls_threads, &id);
		if (!t)
			return 0;
	}
	t->ssl = (__u64)ssl;
	t->buf = (__u64)buf;
	t->outp = (__u64)outp;
	t->dir = dir;
	t->sk_in = 0;
	return 0;
}

/* n bytes of plaintext at buf on socket sk, in direction dir. */
static __always_inline void tls_plain(__u64 sk, __u64 buf, __u64 n, __u32 dir)
{
	struct tls_stream *s = bpf_map_lookup_elem(&tls_streams, &sk);
	struct io_args in = { .arg = buf, .known = true };
	struct pg_scratch *scr;
	__u32 zero = 0;

	if (!s) {
		struct tls_stream fresh = {};

		if (bpf_map_update_elem(&tls_streams, &sk, &fresh, BPF_NOEXIST) == -E2BIG)
			count(CNT_TLS_FULL);
		s = bpf_map_lookup_elem(&tls_streams, &sk);
		if (!s)
			return;
	}
	if (!s->opened) {
		__u8 b[8] = {};

		s->opened = 1;
		/* Its process is one whose probes must stay. */
		tls_note(EV_PG_TLS);
		bpf_probe_read_user(b, sizeof(b), (void *)buf);
		/* A stream seen from its startup message decodes from it. */
		pg_open((struct sock *)sk, sk | PG_TLS_STREAM,
			dir == PG_DIR_FRONTEND && n >= 8 && looks_untyped(b));
	}
	in.nr = dir == PG_DIR_FRONTEND ? NR_write : NR_read;
	scr = bpf_map_lookup_elem(&pgscratch, &zero);
	if (scr)
		pg_frame(scr, sk | PG_TLS_STREAM, &s->ps, &in, n, dir, bpf_ktime_get_ns());
}

SEC("uprobe")
int BPF_KPROBE(ssl_write, void *ssl, const void *buf, int num)
{
	return tls_enter(ssl, buf, NULL, PG_DIR_FRONTEND);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex, void *ssl, const void *buf, size_t num, size_t *written)
{
	return tls_enter(ssl, buf, written, PG_DIR_FRONTEND);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read, void *ssl, void *buf, int num)
{
	return tls_enter(ssl, buf, NULL, PG_DIR_BACKEND);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return tls_enter(ssl, buf, readbytes, PG_DIR_BACKEND);
}

/* The return of any of the four. */
SEC("uretprobe")
int BPF_KRETPROBE(ssl_ret, long rc)
{
	__u64 id = bpf_get_current_pid_tgid(), n = 0, sk;
	struct tls_thread *t = bpf_map_lookup_elem(&tls_threads, &id);
	struct tls_sock *ts, tied = {};
	struct tls_key k = {};

	if (!t || !t->ssl)
		return 0;
	k.ssl = t->ssl;
	k.tgid = id >> 32;
	t->ssl = 0;
	if (t->sk_in) {
		/* Bytes moved inside the call: that is its socket. */
		tied.sk = t->sk_in;
		tied.pg = t->sk_in_pg;
		bpf_map_update_elem(&tls_socks, &k, &tied, BPF_ANY);
	} else {
		ts = bpf_map_lookup_elem(&tls_socks, &k);
		if (ts) {
			tied = *ts;
		} else if (t->last_sk) {
			tied.sk = t->last_sk;
			tied.pg = 1;
			bpf_map_update_elem(&tls_socks, &k, &tied, BPF_ANY);
		}
	}
	if (!tied.sk || !tied.pg)
		return 0;
	if (t->outp) {
		if ((int)rc == 1)
			bpf_probe_read_user(&n, sizeof(n), (void *)t->outp);
	} else if ((int)rc > 0) {
		n = (int)rc;
	}
	if (!n || n > PG_MAX_MSG)
		return 0;
	sk = tied.sk;
	tls_plain(sk, t->buf, n, t->dir);
	return 0;
}

/* A traced process replaced its image: the collector probes its TLS
 * library before the process gets far (it must map it first). */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (capturing && tls_probing && traced_task())
		tls_note(EV_EXEC);
	return 0;
}

#endif
