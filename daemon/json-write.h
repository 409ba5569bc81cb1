/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <jansson.h>
#include <stddef.h>

/*
 * Compact JSON text of a value, the same bytes as json_dumps(v, JSON_COMPACT
 * | JSON_ENCODE_ANY) gives, plus the terminating NUL, at a fraction of its
 * cost: jansson writes through a callback per token and checks every
 * character twice, which made it a fifth of an Acquire. Anything unusual
 * (a real number, invalid UTF-8, very deep nesting) is left to jansson.
 *
 * Returns a malloc'd string (caller frees) and its length with the NUL in
 * *ret_len, or NULL where json_dumps() fails too (or on ENOMEM).
 */
char *json_write_compact(const json_t *v, size_t *ret_len);
