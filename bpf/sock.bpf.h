/* BPF-side helpers: a socket's 4-tuple.
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
#define E2BIG       7

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
