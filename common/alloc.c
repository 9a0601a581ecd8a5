/*
 * alloc.c - allocator hook dispatch and overflow-checked size arithmetic.
 * No state of its own; thread safety is that of the embedder's hooks.
 */
#include "common/alloc.h"

#include <stdlib.h>
#include <string.h>

void *
roost_alloc_malloc(const roost_allocator *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (a == NULL || a->malloc_fn == NULL)
        return malloc(size);
    return a->malloc_fn(a->arg, size);
}

void *
roost_alloc_calloc(const roost_allocator *a, size_t count, size_t size)
{
    size_t total;
    if (!roost_size_mul(count, size, &total))
        return NULL;
    if (a == NULL || a->malloc_fn == NULL)
        return calloc(total ? total : 1, 1);
    void *p = roost_alloc_malloc(a, total);
    if (p != NULL)
        memset(p, 0, total);
    return p;
}

void *
roost_alloc_realloc(const roost_allocator *a, void *ptr, size_t size)
{
    if (size == 0)
        size = 1;
    if (a == NULL || a->realloc_fn == NULL)
        return realloc(ptr, size);
    return a->realloc_fn(a->arg, ptr, size);
}

void
roost_alloc_free(const roost_allocator *a, void *ptr)
{
    if (ptr == NULL)
        return;
    if (a == NULL || a->free_fn == NULL)
        free(ptr);
    else
        a->free_fn(a->arg, ptr);
}

bool
roost_size_mul(size_t x, size_t y, size_t *out)
{
    size_t r;
    if (__builtin_mul_overflow(x, y, &r))
        return false;
    *out = r;
    return true;
}

bool
roost_size_add(size_t x, size_t y, size_t *out)
{
    size_t r;
    if (__builtin_add_overflow(x, y, &r))
        return false;
    *out = r;
    return true;
}
