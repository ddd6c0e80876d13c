/* The findings engine: coupling problems found in a graph, as data.  Pure
 * logic: `seams report` formats the result for a terminal, markdown or
 * JSON, and `seams export --format html` shows it beside the picture. */
#ifndef SEAMS_REPORT_H
#define SEAMS_REPORT_H

#include <jansson.h>
#include <stdbool.h>

#include "graph.h"

enum report_kind {
	REPORT_SHARED_TABLE,
	REPORT_SYNC_CHAIN,
	REPORT_FAN_OUT,
	REPORT_CYCLE,
	REPORT_CO_ACCESS,
	REPORT_TEST_CLOSURE,
	REPORT_NKINDS,
};

/* Thresholds; docs/schema.md ("Report") explains each. */
#define REPORT_CHAIN_MIN_HOPS		3	/* a synchronous chain worth a warning */
#define REPORT_CAUSAL_MIN_HOPS		2	/* a causal chain reported at all (info below a warning) */
#define REPORT_HOP_AVAILABILITY		0.99	/* assumed per hop when compounding */
#define REPORT_MAX_CHAINS		10	/* entry services with a sync_chain finding */
#define REPORT_CHAINS_KEPT		1000	/* longest chains the search remembers */
#define REPORT_PATH_BUDGET		200000	/* DFS steps before the chain search stops */
#define REPORT_FAN_OUT_MIN		4	/* distinct callees that make a fan-out */
#define REPORT_CO_ACCESS_JACCARD	0.8	/* table-set similarity that is co-access */
#define REPORT_CO_ACCESS_MIN_TABLES	2	/* ... when the sets are not identical */
#define REPORT_CLOSURE_MIN_SERVICES	4	/* other services a test needs running */
#define REPORT_TEXT_PER_KIND		3	/* findings of one kind a terminal shows */

/* "shared_table", ...; NULL for an out-of-range kind. */
const char *report_kind_name(int kind);
/* The kind named, or -1. */
int report_kind_parse(const char *name);

/* Every check on the graph:
 *   {"findings": [{"kind", "severity", "title", "services", "tables",
 *                  "nodes", "details", "traffic", ...evidence}, ...],
 *    "summary": {..., "catalog_tables": [...]}}
 * Findings come most severe first, then by traffic.  New reference; NULL
 * only without memory. */
json_t *report_build(struct graph *g);

/* pg_catalog and information_schema: every client reads them, so they
 * couple nobody and never make a finding. */
bool report_is_catalog(const json_t *table);

/* Node id -> "critical"|"warning" for every table in a shared_table
 * finding, for pictures that highlight them.  New reference. */
json_t *report_shared_tables(const json_t *report);

#endif
