/*
 * alloc.h - heap allocation through the embedder's allocator hooks.
 *
 * Every allocation in client/, common/ and dp/ goes through these functions
 * with the roost_allocator of the handle that owns the memory; a NULL
 * allocator means the C library. Sizes are computed with the overflow
 * checks below, never with bare multiplication.
 */
#ifndef ROOST_COMMON_ALLOC_H
#define ROOST_COMMON_ALLOC_H

#include <roost/roost.h>

#include <stdbool.h>
#include <stddef.h>

void *roost_alloc_malloc(const roost_allocator *a, size_t size);
/* Zeroed array of count elements of size bytes; NULL on overflow. */
void *roost_alloc_calloc(const roost_allocator *a, size_t count, size_t size);
void *roost_alloc_realloc(const roost_allocator *a, void *ptr, size_t size);
void roost_alloc_free(const roost_allocator *a, void *ptr);

/* roost_size_mul - *out = x * y; false (and *out untouched) on overflow. */
bool roost_size_mul(size_t x, size_t y, size_t *out);
/* roost_size_add - *out = x + y; false (and *out untouched) on overflow. */
bool roost_size_add(size_t x, size_t y, size_t *out);

#endif
