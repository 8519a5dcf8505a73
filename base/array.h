/*
 * array: growing an array by doubling, as git's ALLOC_GROW does, with the
 * size arithmetic checked: the one way core/ and cli/ grow their arrays.
 *
 *   rc = SS_ARRAY_GROW(v, n + 1, cap);   room for n + 1 elements of *v
 *   if (rc) goto fail;
 *   v[n++] = x;
 *
 * On failure (SS_ERR_NOMEM: out of memory, or a size that overflows) the
 * array and cap are left as they were, still owned by the caller.
 */
#ifndef SS_ARRAY_H
#define SS_ARRAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ss_error.h"

#define SS_ARRAY_MIN 16 /* slots of a first allocation */

/* *(void **)pptr grows to hold at least nr elements of elem bytes; *alloc is its capacity. */
static inline ss_rc ss_array_grow(void *pptr, size_t elem, size_t nr, size_t *alloc)
{
    void *p, *np;
    size_t cap = *alloc;
    if (nr <= cap) return SS_OK;
    cap = cap < SS_ARRAY_MIN ? SS_ARRAY_MIN : cap;
    while (cap < nr) {
        if (cap > SIZE_MAX / 2) return SS_ERR_NOMEM;
        cap *= 2;
    }
    if (!elem || cap > SIZE_MAX / elem) return SS_ERR_NOMEM;
    memcpy(&p, pptr, sizeof p); /* pptr is a T **: read and written as bytes, no aliasing */
    np = realloc(p, cap * elem);
    if (!np) return SS_ERR_NOMEM;
    memcpy(pptr, &np, sizeof np);
    *alloc = cap;
    return SS_OK;
}

/* ptr: a T * lvalue; nr: elements wanted; alloc: a size_t lvalue, its capacity. */
#define SS_ARRAY_GROW(ptr, nr, alloc) ss_array_grow(&(ptr), sizeof *(ptr), (nr), &(alloc))

#endif
