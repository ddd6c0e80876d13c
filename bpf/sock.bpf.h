/* BPF-side helpers: from a task's fd to its socket, and a socket's 4-tuple.
 * CO-RE reads only, so one object runs on any BTF kernel. */
#ifndef SEAMS_SOCK_BPF_H
#define SEAMS_SOCK_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_UNIX     1
#define AF_INET     2
#define AF_INET6    10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT      00170000
#define S_IFSOCK    0140000
#define E2BIG       7

/* The socket behind fd in the current task, or NULL when fd is not a socket. */
static __always_inline struct sock *fd_to_sock(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;
	struct socket *so;
	umode_t mode;

	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	so = BPF_CORE_READ(file, private_data);
	return so ? BPF_CORE_READ(so, sk) : NULL;
}

static __always_inline bool sock_is_tcp(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	return (family == AF_INET || family == AF_INET6) &&
	       BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP &&
	       BPF_CORE_READ(sk, sk_type) == SOCK_STREAM;
}

/* IPv4 as IPv4-mapped IPv6, so the collector joins both families on one key. */
static __always_inline void v4_mapped(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

static __always_inline void sock_tuple(struct sock *sk, __u8 *laddr, __u8 *raddr,
				       __u16 *lport, __u16 *rport)
{
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET) {
		v4_mapped(laddr, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		v4_mapped(raddr, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	} else {
		/* Explicit size: BPF_CORE_READ_INTO would copy sizeof(*laddr), one byte. */
		bpf_core_read(laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	*lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	*rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

#endif
