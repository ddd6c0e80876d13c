/* Empty programs on the tracepoints seams hooks for socket I/O: what any BPF
 * program there costs each socket call on the host before it does any work.
 * syscall_cost.sh compares seams against this floor. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tp_btf/sock_send_length")
int floor_send(void *ctx)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int floor_recv(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
