/* Latency histograms that stay small and can be added together: log-spaced
 * buckets (four per power of two, from 1 us to about 18 minutes) give
 * percentiles within a few percent, and a second set of counts on fixed
 * bounds (OpenTelemetry's advised ones) gives Prometheus exact buckets.
 * Windows are histograms too: merge adds, reset zeroes. */
#ifndef SEAMS_HIST_H
#define SEAMS_HIST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_FINE   125 /* bucket 0: < 1.024 us; then 4 per octave up to 2^40 ns */
#define HIST_BOUNDS 9

/* The Prometheus bucket bounds, in seconds. */
extern const double hist_bounds_s[HIST_BOUNDS];

struct hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t min_ns, max_ns;
	uint64_t fine[HIST_FINE];
	uint64_t le[HIST_BOUNDS + 1]; /* per bound, not cumulative; last: above all */
};

void hist_add(struct hist *h, uint64_t ns);
void hist_merge(struct hist *dst, const struct hist *src);
/* The value at percentile p (0-100), in ns: the middle of its bucket,
 * clamped to what was observed.  0 when empty. */
double hist_percentile(const struct hist *h, double p);
/* {"p50","p95","p99","count"} in milliseconds, or NULL when empty. */
json_t *hist_json_ms(const struct hist *h);

#endif
