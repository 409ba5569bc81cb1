#!/bin/bash
# Run the transport benchmark against the fake-kernel broker on fake devices,
# with both front ends up at once: ./bench/run-bench.sh [BUILD_DIR] [ITERATIONS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
iterations=${2:-500}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT

cat > "$tmp/bus.conf" <<CONF
<busconfig>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
  </policy>
</busconfig>
CONF
dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 3>"$tmp/address" &
for _ in $(seq 100); do [ -s "$tmp/address" ] && break; sleep 0.05; done
address=$(head -n1 "$tmp/address")

"$here/../tests/fixtures/with-fake-sysfs" default -- "$build/daemon/iommufd-broker-fake" \
        --varlink-listen "$tmp/broker.sock" --bus-address "$address" \
        --policy "$tmp/none.json" --policy-dir "$tmp/none.d" > "$tmp/broker.log" 2>&1 &
for _ in $(seq 200); do [ -S "$tmp/broker.sock" ] && break; sleep 0.05; done
sleep 0.3  # the bus name is requested right after the socket is bound

LD_LIBRARY_PATH="$build/client" "$build/bench/bench-transports" "$tmp/broker.sock" "$address" 0000:00:02.0 "$iterations"
