#!/bin/bash
# The man pages keep up with the code: every option of `iommufd-broker --help`
# and every command and option of `iommufdctl --help` is in its man page, and
# every typed error of protocol/broker-errors.h is in iommufd-broker(8), and
# every key the policy parser accepts is in iommufd-broker.policy(5).
#   test-man-coverage.sh SOURCE_ROOT IOMMUFD_BROKER IOMMUFDCTL
set -euo pipefail
src=$1 broker=$2 ctl=$3
man=$src/docs/man
status=0

# The page must name it in bold, as *name* or *--option*.
check() {
        local page=$1 what=$2
        if grep -qF -- "*$what*" "$man/$page"; then
                echo "ok - $page names $what"
        else
                echo "FAIL - $page does not describe $what (add it to docs/man/$page)"
                status=1
        fi
}

for opt in $("$broker" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
        check iommufd-broker.8.scd "$opt"
done
for opt in $("$ctl" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
        check iommufdctl.1.scd "$opt"
done
for cmd in $("$ctl" --help | sed -n '/^Commands:/,/^Options:/p' | sed -n 's/^  \([a-z][a-z-]*\).*/\1/p'); do
        check iommufdctl.1.scd "$cmd"
done
for error in $(sed -n 's/.*X([A-Z_]*, *"\([A-Za-z]*\)".*/\1/p' "$src/protocol/broker-errors.h"); do
        check iommufd-broker.8.scd "$error"
done
for key in $(grep -ho 'streq(key, "[a-z_]*")' "$src"/daemon/policy*.c | sed 's/.*"\(.*\)".*/\1/' | sort -u); do
        check iommufd-broker.policy.5.scd "$key"
done
exit $status
