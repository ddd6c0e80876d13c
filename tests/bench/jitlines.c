// SPDX-License-Identifier: GPL-2.0
/* tests/bench/jitlines.c: put perf samples on the source lines of loaded BPF
 * programs.  perf annotate and bpftool's JIT dump need libbfd, which
 * Debian's builds lack; the kernel gives each program's JIT line info
 * (the address each source line's code starts at) and its BTF has the
 * text, which is all a sample's address needs.
 *   jitlines PROG_ID... < samples
 * samples: one "ADDRESS SYMBOL" per line (perf script -F ip,sym).  Prints
 * each program's samples, then the busiest lines: samples, program, line. */
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct line {
	uint64_t addr;
	const char *text;
	int prog;
	long hits;
};

struct range {
	uint64_t start, end;
	int prog;
};

static struct line *lines;
static size_t nlines;
static struct range *ranges;
static size_t nranges;
static char names[64][BPF_OBJ_NAME_LEN];
static long prog_hits[64];

static int by_addr(const void *a, const void *b)
{
	const struct line *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int by_hits(const void *a, const void *b)
{
	const struct line *x = a, *y = b;

	return y->hits > x->hits ? 1 : y->hits < x->hits ? -1 : 0;
}

/* The program's name, code ranges and line starts, appended to the tables. */
static int load(int p, __u32 id)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info), nl, njl, nk, nf;
	struct bpf_line_info *li;
	__u64 *jl, *ks;
	__u32 *fl;
	struct btf *btf;
	int fd = bpf_prog_get_fd_by_id(id);

	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
		fprintf(stderr, "jitlines: program %u: %s\n", id, strerror(errno));
		return -1;
	}
	memcpy(names[p], info.name, sizeof(names[p]));
	nl = info.nr_line_info;
	njl = info.nr_jited_line_info;
	nk = info.nr_jited_ksyms;
	nf = info.nr_jited_func_lens;
	li = calloc(nl + 1, sizeof(*li));
	jl = calloc(njl + 1, sizeof(*jl));
	ks = calloc(nk + 1, sizeof(*ks));
	fl = calloc(nf + 1, sizeof(*fl));
	btf = btf__load_from_kernel_by_id(info.btf_id);
	memset(&info, 0, sizeof(info));
	info.nr_line_info = nl;
	info.line_info_rec_size = sizeof(*li);
	info.line_info = (uintptr_t)li;
	info.nr_jited_line_info = njl;
	info.jited_line_info_rec_size = sizeof(*jl);
	info.jited_line_info = (uintptr_t)jl;
	info.nr_jited_ksyms = nk;
	info.jited_ksyms = (uintptr_t)ks;
	info.nr_jited_func_lens = nf;
	info.jited_func_lens = (uintptr_t)fl;
	len = sizeof(info);
	if (!li || !jl || !ks || !fl || !btf || bpf_obj_get_info_by_fd(fd, &info, &len)) {
		fprintf(stderr, "jitlines: program %u: no line info (%s)\n", id, strerror(errno));
		return -1;
	}
	ranges = realloc(ranges, (nranges + nk) * sizeof(*ranges));
	lines = realloc(lines, (nlines + njl) * sizeof(*lines));
	for (__u32 i = 0; i < nk && i < nf; i++)
		ranges[nranges++] = (struct range){ ks[i], ks[i] + fl[i], p };
	for (__u32 i = 0; i < njl && i < nl; i++) {
		const char *t = btf__name_by_offset(btf, li[i].line_off);

		while (t && (*t == ' ' || *t == '\t'))
			t++;
		lines[nlines++] = (struct line){ jl[i], t && *t ? t : "?", p, 0 };
	}
	return 0;
}

int main(int argc, char **argv)
{
	char buf[512], sym[256];
	unsigned long long ip;
	int top = getenv("TOP") ? atoi(getenv("TOP")) : 30;
	long total = 0;

	if (argc < 2 || argc > 65) {
		fprintf(stderr, "usage: jitlines PROG_ID... < samples (at most 64 programs)\n");
		return 2;
	}
	for (int p = 0; p + 1 < argc; p++)
		if (load(p, strtoul(argv[p + 1], NULL, 0)))
			return 1;
	qsort(lines, nlines, sizeof(*lines), by_addr);
	while (fgets(buf, sizeof(buf), stdin)) {
		size_t lo = 0, hi = nlines;
		int p = -1;

		if (sscanf(buf, "%llx %255s", &ip, sym) != 2)
			continue;
		for (size_t r = 0; r < nranges; r++)
			if (ip >= ranges[r].start && ip < ranges[r].end)
				p = ranges[r].prog;
		if (p < 0)
			continue;
		/* The last line starting at or before ip. */
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (lines[mid].addr <= ip)
				lo = mid + 1;
			else
				hi = mid;
		}
		prog_hits[p]++;
		total++;
		if (lo)
			lines[lo - 1].hits++;
	}
	for (int p = 0; p + 1 < argc; p++)
		printf("%-16s %6ld samples\n", names[p], prog_hits[p]);
	/* A line inlined in several places counts once, with all its samples. */
	for (size_t i = 0; i < nlines; i++) {
		for (size_t j = 0; j < i && lines[i].hits; j++) {
			if (lines[j].prog == lines[i].prog && !strcmp(lines[j].text, lines[i].text)) {
				lines[j].hits += lines[i].hits;
				lines[i].hits = 0;
			}
		}
	}
	qsort(lines, nlines, sizeof(*lines), by_hits);
	printf("\n%7s %5s  %-16s %s\n", "samples", "share", "program", "line");
	for (size_t i = 0; i < nlines && (int)i < top && lines[i].hits; i++)
		printf("%7ld %4.0f%%  %-16s %.110s\n", lines[i].hits, 100.0 * lines[i].hits / total,
		       names[lines[i].prog], lines[i].text);
	return 0;
}
