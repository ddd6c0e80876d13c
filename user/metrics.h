/* The agent's /metrics page: Grafana's service-graph families, OpenTelemetry's
 * database operation histogram, and seams' own health, in Prometheus text. */
#ifndef SEAMS_METRICS_H
#define SEAMS_METRICS_H

#include "collector.h"
#include "prom.h"

/* Render everything since start into b (emptied first).  0, or -1 when out
 * of memory. */
int metrics_render(struct strbuf *b, const struct collector *c);

#endif
