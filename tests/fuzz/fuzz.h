/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Every target defines this; libFuzzer calls it (build-fuzz, clang), and
 * fuzz-replay.c runs it once per corpus file in the ordinary build. */
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
