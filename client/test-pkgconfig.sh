#!/bin/bash
# A consumer builds against libiommufd-broker with nothing but pkg-config, and
# the library exports only its API. Args: BUILD_ROOT
set -euo pipefail
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

export PKG_CONFIG_PATH=$build/meson-uninstalled
flags=$(pkg-config --cflags --libs libiommufd-broker)
echo "pkg-config: $flags"

cat > "$tmp/consumer.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <iommufd-broker.h>

int main(void) {
        iommufd_broker *b = NULL;
        int r = iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, "/nonexistent/broker.sock", &b);
        printf("connect: %s\n", strerror(-r));
        return r == -ENOENT && !b ? 0 : 1;
}
C
# shellcheck disable=SC2086
cc -Wall -Werror -o "$tmp/consumer" "$tmp/consumer.c" $flags
LD_LIBRARY_PATH=$build/client "$tmp/consumer"

extra=$(nm -D --defined-only "$build/client/libiommufd-broker.so" | awk '{print $3}' |
        grep -v -e '^iommufd_broker_' -e '^LIBIOMMUFD_BROKER_1$' || true)
if [ -n "$extra" ]; then
        echo "FAIL: exported beyond the API: $extra"
        exit 1
fi
echo "ok: only iommufd_broker_* exported"
