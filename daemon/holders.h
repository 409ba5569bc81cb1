/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

/*
 * Who still has a device open, found the way fuser does: by walking
 * /proc/<pid>/fd. Only a file whose link points into /dev (or a memfd, for
 * the fake kernel) is stat()ed, so a hung network or FUSE file is never
 * touched. It reads other users' fd tables (CAP_SYS_PTRACE) and may take
 * long on a big host: call it from a worker (worker.h), never the loop.
 */
typedef struct HolderTarget {
        char address[16];
        dev_t devnum;
} HolderTarget;

/* Whether the open file (its stat and /proc link target) is target's device. */
typedef bool (*HolderMatch)(const struct stat *st, const char *link_target, const HolderTarget *target);

#define HOLDERS_MAX_PER_TARGET 8

/* Writes "ADDRESS PID COMM\n" for each process that holds a target, at most
 * HOLDERS_MAX_PER_TARGET per target, skipping skip_pid. proc: NULL for /proc.
 * Returns the number of lines written or a negative errno. */
int holders_scan(const char *proc, const HolderTarget *targets, size_t n, HolderMatch match, pid_t skip_pid,
                 FILE *out);

/* One holder parsed back from a line of holders_scan() output. */
typedef struct HolderLine {
        char address[16];
        pid_t pid;
        char comm[17];
} HolderLine;

int holders_parse_line(const char *line, HolderLine *ret);
