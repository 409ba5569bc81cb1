#!/bin/bash
# Each man page given renders with `man -l` and man/groff warn about nothing.
# Exit 77 (skip) without man(1).
set -euo pipefail
command -v man >/dev/null || { echo "skip: no man(1)"; exit 77; }
status=0
for page in "$@"; do
        if ! out=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null); then
                echo "FAIL - man -l $page"
                status=1
        elif [ -n "$out" ]; then
                printf '%s\n' "$out"
                echo "FAIL - man -l $page warns"
                status=1
        elif [ "$(MANWIDTH=80 man -l "$page" 2>/dev/null | wc -l)" -lt 20 ]; then
                echo "FAIL - man -l $page renders almost nothing"
                status=1
        else
                echo "ok - $(basename "$page") renders without warnings"
        fi
done
exit $status
