/* A small open-addressing hash map from u64 keys to pointers, for the hot
 * per-event lookups (socket -> connection, cgroup id -> name). */
#ifndef SEAMS_U64MAP_H
#define SEAMS_U64MAP_H

#include <stddef.h>
#include <stdint.h>

struct u64map {
	uint64_t *keys;
	void **vals; /* NULL marks an empty slot; a deleted one holds TOMBSTONE */
	size_t cap, len, used;
};

void *u64map_get(const struct u64map *m, uint64_t key);
/* Insert or replace; returns -1 when out of memory. */
int u64map_put(struct u64map *m, uint64_t key, void *val);
void *u64map_del(struct u64map *m, uint64_t key);
void u64map_free(struct u64map *m);

/* Visit every value; the map must not change during the walk. */
#define u64map_for_each(m, i, v) \
	for (size_t i = 0; i < (m)->cap; i++) \
		if (((v) = u64map_slot((m), i)) != NULL)

void *u64map_slot(const struct u64map *m, size_t i);

#endif
