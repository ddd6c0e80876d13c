/* The Prometheus text format by hand: a growable buffer, exact number
 * formatting and label values that can never break a line or a parser. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>

#include "prom.h"

/* Room for len + n bytes and a NUL; false once out of memory. */
static bool sb_reserve(struct strbuf *b, size_t n)
{
	size_t cap;
	char *s;

	if (b->oom)
		return false;
	if (b->len + n < b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap <= b->len + n) {
		if (cap > SIZE_MAX / 2)
			goto oom;
		cap *= 2;
	}
	s = realloc(b->s, cap);
	if (!s)
		goto oom;
	b->s = s;
	b->cap = cap;
	return true;
oom:
	b->oom = true;
	return false;
}

void sb_append(struct strbuf *b, const char *s, size_t n)
{
	if (!sb_reserve(b, n))
		return;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void sb_putc(struct strbuf *b, char c)
{
	sb_append(b, &c, 1);
}

void sb_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* Most lines fit in what is left, so format once in place. */
	if (!sb_reserve(b, 64))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->s[b->len] = '\0';
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (!sb_reserve(b, n)) {
			b->s[b->len] = '\0';
			return;
		}
		va_start(ap, fmt);
		vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += n;
}

void sb_reset(struct strbuf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->s)
		b->s[0] = '\0';
}

void sb_free(struct strbuf *b)
{
	free(b->s);
	*b = (struct strbuf){ 0 };
}

char *prom_format_value(double v, char *buf, size_t len)
{
	if (isnan(v))
		snprintf(buf, len, "NaN");
	else if (isinf(v))
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		snprintf(buf, len, "%.0f", v);
	else {
		/* %.17g always reads back exactly but prints 0.005 as
		 * 0.0050000000000000001; %g drops trailing zeros, so the first
		 * precision that reads back is the shortest form. */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, len, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
	return buf;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), 0 if there is none. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

static void label_value(struct strbuf *b, const char *v)
{
	const unsigned char *s = (const unsigned char *)(v ? v : "");
	size_t used = 0, n;

	while (*s) {
		n = utf8_len(s);
		/* Budget counts the text, not its escapes, so one value never
		 * cuts differently for being full of quotes. */
		if (used + (n ? n : 3) > PROM_LABEL_MAX)
			break;
		if (!n) {
			sb_append(b, "\xef\xbf\xbd", 3);
			used += 3;
			s++;
			continue;
		}
		if (*s == '\\')
			sb_append(b, "\\\\", 2);
		else if (*s == '"')
			sb_append(b, "\\\"", 2);
		else if (*s == '\n')
			sb_append(b, "\\n", 2);
		else
			sb_append(b, (const char *)s, n);
		used += n;
		s += n;
	}
}

/* name suffix {labels, extra="..."} value-text: every sample line. */
static void series(struct strbuf *b, const char *name, const char *suffix,
		   const char *const *labels, const char *le, const char *value)
{
	bool first = true;

	sb_printf(b, "%s%s", name, suffix);
	for (; labels && labels[0]; labels += 2) {
		sb_printf(b, "%s%s=\"", first ? "{" : ",", labels[0]);
		label_value(b, labels[1]);
		sb_putc(b, '"');
		first = false;
		if (!labels[1])
			break;
	}
	if (le) {
		sb_printf(b, "%sle=\"%s\"", first ? "{" : ",", le);
		first = false;
	}
	sb_printf(b, "%s %s\n", first ? "" : "}", value);
}

void prom_family(struct strbuf *b, const char *name, const char *type, const char *help)
{
	sb_printf(b, "# HELP %s ", name);
	/* Help text escapes only backslash and newline (no quotes around it). */
	for (const char *p = help ? help : ""; *p; p++) {
		if (*p == '\\')
			sb_append(b, "\\\\", 2);
		else if (*p == '\n')
			sb_append(b, "\\n", 2);
		else
			sb_putc(b, *p);
	}
	sb_printf(b, "\n# TYPE %s %s\n", name, type);
}

void prom_sample(struct strbuf *b, const char *name, const char *const *labels, double value)
{
	char v[32];

	series(b, name, "", labels, NULL, prom_format_value(value, v, sizeof(v)));
}

void prom_histogram(struct strbuf *b, const char *name, const char *const *labels,
		    const double *bounds, const uint64_t *counts, size_t nbounds, double sum)
{
	char le[32], v[32];
	uint64_t cum = 0;

	/* Counts stay integers: a double would round them past 2^53. */
	for (size_t i = 0; i <= nbounds; i++) {
		cum += counts[i];
		snprintf(v, sizeof(v), "%" PRIu64, cum);
		series(b, name, "_bucket", labels,
		       i < nbounds ? prom_format_value(bounds[i], le, sizeof(le)) : "+Inf", v);
	}
	series(b, name, "_sum", labels, NULL, prom_format_value(sum, v, sizeof(v)));
	snprintf(v, sizeof(v), "%" PRIu64, cum);
	series(b, name, "_count", labels, NULL, v);
}
