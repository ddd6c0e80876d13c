/* Bucket index from the position of the highest set bit and the two bits
 * below it: no floating point and no table on the hot path. */
#include <string.h>

#include "hist.h"

const double hist_bounds_s[HIST_BOUNDS] = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10 };
static const uint64_t bounds_ns[HIST_BOUNDS] = {
	1000000ULL, 5000000ULL, 10000000ULL, 50000000ULL, 100000000ULL,
	500000000ULL, 1000000000ULL, 5000000000ULL, 10000000000ULL,
};

#define MSB_MIN 10 /* 1024 ns */

static size_t fine_index(uint64_t ns)
{
	int msb;
	size_t i;

	if (ns < (1ULL << MSB_MIN))
		return 0;
	msb = 63 - __builtin_clzll(ns);
	i = 1 + (size_t)(msb - MSB_MIN) * 4 + ((ns >> (msb - 2)) & 3);
	return i < HIST_FINE ? i : HIST_FINE - 1;
}

/* [lo, hi) of fine bucket i, in ns. */
static void fine_range(size_t i, double *lo, double *hi)
{
	int msb;
	uint64_t sub;

	if (!i) {
		*lo = 0;
		*hi = 1 << MSB_MIN;
		return;
	}
	msb = MSB_MIN + (int)((i - 1) / 4);
	sub = (i - 1) % 4;
	*lo = (double)((4 + sub) << (msb - 2));
	*hi = (double)((5 + sub) << (msb - 2));
}

void hist_add(struct hist *h, uint64_t ns)
{
	size_t b = 0;

	if (!h->count || ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
	h->count++;
	h->sum_ns += ns;
	h->fine[fine_index(ns)]++;
	while (b < HIST_BOUNDS && ns > bounds_ns[b])
		b++;
	h->le[b]++;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (!src->count)
		return;
	if (!dst->count || src->min_ns < dst->min_ns)
		dst->min_ns = src->min_ns;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
	dst->count += src->count;
	dst->sum_ns += src->sum_ns;
	for (size_t i = 0; i < HIST_FINE; i++)
		dst->fine[i] += src->fine[i];
	for (size_t i = 0; i <= HIST_BOUNDS; i++)
		dst->le[i] += src->le[i];
}

double hist_percentile(const struct hist *h, double p)
{
	uint64_t rank, seen = 0;
	double lo, hi, v;

	if (!h->count)
		return 0;
	/* The nearest-rank definition: the smallest value with p% at or below it. */
	rank = (uint64_t)(p / 100.0 * (double)h->count + 0.999999);
	if (rank < 1)
		rank = 1;
	for (size_t i = 0; i < HIST_FINE; i++) {
		seen += h->fine[i];
		if (seen < rank)
			continue;
		fine_range(i, &lo, &hi);
		v = (lo + hi) / 2;
		if (v < (double)h->min_ns)
			v = (double)h->min_ns;
		if (v > (double)h->max_ns)
			v = (double)h->max_ns;
		return v;
	}
	return (double)h->max_ns;
}

static double ms3(double ns)
{
	/* Three decimals of a millisecond: finer would claim precision the
	 * buckets do not have. */
	return (double)(long long)(ns / 1e3 + 0.5) / 1e3;
}

json_t *hist_json_ms(const struct hist *h)
{
	if (!h->count)
		return NULL;
	return json_pack("{s:f, s:f, s:f, s:I}", "p50", ms3(hist_percentile(h, 50)),
			 "p95", ms3(hist_percentile(h, 95)), "p99", ms3(hist_percentile(h, 99)),
			 "count", (json_int_t)h->count);
}
