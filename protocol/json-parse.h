/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <jansson.h>
#include <stddef.h>

/*
 * A fast path for the JSON every varlink call is: an object of plain ASCII
 * strings without escapes, integers, booleans, null, nested objects and
 * arrays. json_loadb() spends about 14,000 instructions on a 100-byte call
 * (a lexer that reads through a callback per byte); this builds the same
 * jansson values directly.
 *
 * Returns 1 with *ret set when text (len bytes) is such a document, and then
 * *ret equals what json_loadb(text, len, JSON_REJECT_DUPLICATES) gives, key
 * order included. Returns 0 for anything else, valid or not (escapes, bytes
 * outside printable ASCII, fractions, exponents, integers of 19 digits or
 * more, duplicate keys, nesting past 32, a top level that is not an object,
 * no memory): the caller hands that to json_loadb(), which decides, so the
 * result is jansson's for every input.
 */
int json_parse_simple(const char *text, size_t len, json_t **ret);
