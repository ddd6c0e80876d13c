/* Merging graphs captured on several hosts into one (docs/schema.md,
 * "Merged graphs"). */
#ifndef SEAMS_MERGE_H
#define SEAMS_MERGE_H

#include <jansson.h>
#include <stddef.h>

#include "graph.h"

/* A new graph holding all n inputs: services by name, external endpoints
 * resolved to the service that accepted them, counts added.  Things a user
 * should know but that do not stop the merge (an address two services
 * claim) are appended to warnings as strings when it is not NULL.
 * NULL with a one-line reason in err. */
struct graph *merge_graphs(struct graph *const *in, size_t n, json_t *warnings,
			   char *err, size_t errlen);

#endif
