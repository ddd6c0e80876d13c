/* floor OBJ: load and attach every program of a BPF object, say "attached"
 * on stderr, and hold them until SIGINT or SIGTERM (syscall_cost.sh). */
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;

	if (argc != 2)
		return fprintf(stderr, "usage: floor OBJECT.bpf.o\n"), 2;
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || bpf_object__load(obj))
		return fprintf(stderr, "floor: cannot load %s\n", argv[1]), 1;
	bpf_object__for_each_program(prog, obj)
		if (!bpf_program__attach(prog))
			return fprintf(stderr, "floor: cannot attach %s\n", bpf_program__name(prog)), 1;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fprintf(stderr, "floor: attached\n");
	while (!stop)
		pause();
	bpf_object__close(obj);
	return 0;
}
