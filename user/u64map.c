/* Open addressing with linear probing; tombstones keep probe chains intact
 * after deletes, and a rehash drops them once they pile up. */
#include <stdlib.h>

#include "u64map.h"

static char tombstone;
#define TOMBSTONE ((void *)&tombstone)

static size_t slot_of(uint64_t key, size_t cap)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL; /* murmur3 finalizer: pointers hash well */
	key ^= key >> 33;
	return key & (cap - 1);
}

void *u64map_slot(const struct u64map *m, size_t i)
{
	void *v = m->vals[i];

	return v == TOMBSTONE ? NULL : v;
}

void *u64map_get(const struct u64map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (!m->vals[i])
			return NULL;
		if (m->vals[i] != TOMBSTONE && m->keys[i] == key)
			return m->vals[i];
	}
}

static int rehash(struct u64map *m, size_t cap)
{
	struct u64map n = { .cap = cap };

	n.keys = calloc(cap, sizeof(*n.keys));
	n.vals = calloc(cap, sizeof(*n.vals));
	if (!n.keys || !n.vals) {
		free(n.keys);
		free(n.vals);
		return -1;
	}
	for (size_t i = 0; i < m->cap; i++)
		if (u64map_slot(m, i))
			u64map_put(&n, m->keys[i], m->vals[i]);
	free(m->keys);
	free(m->vals);
	*m = n;
	return 0;
}

int u64map_put(struct u64map *m, uint64_t key, void *val)
{
	size_t i, tomb = SIZE_MAX;

	if ((m->used + 1) * 4 >= m->cap * 3 &&
	    rehash(m, m->len * 2 >= m->cap / 2 ? (m->cap ? m->cap * 2 : 64) : m->cap))
		return -1;
	for (i = slot_of(key, m->cap); m->vals[i]; i = (i + 1) & (m->cap - 1)) {
		if (m->vals[i] == TOMBSTONE) {
			if (tomb == SIZE_MAX)
				tomb = i;
		} else if (m->keys[i] == key) {
			m->vals[i] = val;
			return 0;
		}
	}
	if (tomb != SIZE_MAX) {
		i = tomb;
	} else {
		m->used++;
	}
	m->keys[i] = key;
	m->vals[i] = val;
	m->len++;
	return 0;
}

void *u64map_del(struct u64map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(key, m->cap); m->vals[i]; i = (i + 1) & (m->cap - 1)) {
		if (m->vals[i] != TOMBSTONE && m->keys[i] == key) {
			void *v = m->vals[i];

			m->vals[i] = TOMBSTONE;
			m->len--;
			return v;
		}
	}
	return NULL;
}

void u64map_free(struct u64map *m)
{
	free(m->keys);
	free(m->vals);
	*m = (struct u64map){ 0 };
}
