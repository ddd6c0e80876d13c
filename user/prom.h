/* The Prometheus text exposition format (0.0.4), written by hand into a
 * growable buffer: no C client library is packaged, and the format is
 * small.  No global state: the collector renders a page, then publishes it. */
#ifndef SEAMS_PROM_H
#define SEAMS_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Longest label value written, in bytes before escaping: a statement or a
 * cgroup path as a label must not make one series kilobytes long. */
#define PROM_LABEL_MAX 1024

/* A growable string.  Zero-initialized is empty; s is NUL-terminated once
 * anything was written.  Out of memory is sticky: later writes are
 * dropped and oom stays set, so a renderer checks once at the end. */
struct strbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

void sb_append(struct strbuf *b, const char *s, size_t n);
void sb_putc(struct strbuf *b, char c);
void sb_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empty again, keeping the memory for the next render. */
void sb_reset(struct strbuf *b);
void sb_free(struct strbuf *b);

/* "# HELP" and "# TYPE" lines, once per family, before its samples.
 * type: "counter", "gauge", "histogram". */
void prom_family(struct strbuf *b, const char *name, const char *type, const char *help);

/* One sample line: name{k="v",...} value.  labels is NULL or a
 * NULL-terminated array of key, value pairs; keys and names are the
 * caller's constants and go out as given.  Values are cut at
 * PROM_LABEL_MAX bytes on a UTF-8 boundary, a byte that is not UTF-8
 * becomes U+FFFD, and backslash, double quote and newline are escaped. */
void prom_sample(struct strbuf *b, const char *name, const char *const *labels, double value);

/* A histogram series: name_bucket{...,le="b"} for each bound and "+Inf",
 * cumulative, then name_sum and name_count.  bounds ascending in the
 * metric's unit; counts[i] is the observations in (bounds[i-1], bounds[i]],
 * not cumulative, and counts[nbounds] those above the last bound. */
void prom_histogram(struct strbuf *b, const char *name, const char *const *labels,
		    const double *bounds, const uint64_t *counts, size_t nbounds, double sum);

/* A value as Prometheus clients write it: "3", "0.005", "1e-07", "+Inf",
 * "NaN".  Exact: an integral value below 2^53 has no exponent, any other
 * is the shortest decimal that reads back as the same double.  buf holds
 * at least 32 bytes; returns buf. */
char *prom_format_value(double v, char *buf, size_t len);

#endif
