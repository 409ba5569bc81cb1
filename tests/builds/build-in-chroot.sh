#!/bin/bash
# Runs inside a minimal Debian chroot (run-chroot-builds.sh sets it up): build
# the `meson dist` tarball as a packager would, with -Werror, run the unit
# tests, install into a DESTDIR and then into the chroot's own /usr, and check
# that what got installed runs and that its man pages render.
#   build-in-chroot.sh SUITE DIST_TARBALL [UAPI_DIR] [--also-usr-local]
set -euo pipefail

suite=$1 dist=$2 uapi_dir=${3:-} also_usr_local=${4:-}
work=/tmp/chroot-build
step() { printf '  %s: [%3d s] %s\n' "$suite" "$SECONDS" "$*"; }
fail() { printf '  %s: FAIL: %s\n' "$suite" "$*" >&2; exit 1; }
# Quiet when it works, the last lines of output when it does not.
quiet() {
        local out
        out=$("$@" 2>&1) || { printf '%s\n' "$out" | tail -n 60 >&2; fail "$*"; }
}

mkdir -p "$work"
tar -xf "$dist" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'iommufd-broker-*' | head -n1)
[ -n "$src" ] || fail "no source tree in $dist"

step "meson setup --prefix=/usr -Dwerror=true ($(gcc -dumpfullversion), meson $(meson --version), linux headers $(dpkg-query -W -f='${Version}' linux-libc-dev))"
quiet meson setup "$work/build" "$src" -Dwerror=true --prefix=/usr
step "compile"
quiet ninja -C "$work/build"

step "unit tests${uapi_dir:+ (uapi.h also against $uapi_dir)}"
IOMMUFD_UAPI_DIR=$uapi_dir quiet meson test -C "$work/build" --suite unit --num-processes 2 --print-errorlogs

step "meson install --destdir"
quiet meson install -C "$work/build" --destdir "$work/destdir"
for f in usr/bin/iommufdctl usr/sbin/iommufd-broker usr/include/iommufd-broker.h \
         usr/share/man/man1/iommufdctl.1 usr/share/man/man8/iommufd-broker.8 \
         usr/share/man/man5/iommufd-broker.policy.5; do
        [ -e "$work/destdir/$f" ] || fail "meson install did not install /$f"
done
find "$work/destdir" -name libiommufd-broker.so.0 | grep -q . ||
        fail "meson install did not install libiommufd-broker.so.0"

# Into the chroot's own /usr, with meson's default libdir for this system:
# the installed iommufdctl must find its library with no help.
step "meson install into /usr (libdir $(meson introspect --buildoptions "$work/build" |
        python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"][0])')), then the installed programs run"
quiet meson install -C "$work/build"
quiet /usr/bin/iommufdctl --version
quiet /usr/bin/iommufdctl --help
quiet /usr/sbin/iommufd-broker --version

step "man -l renders the installed man pages without warnings"
for page in /usr/share/man/man1/iommufdctl.1 /usr/share/man/man8/iommufd-broker.8 \
            /usr/share/man/man5/iommufd-broker.policy.5; do
        warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || fail "man -l $page"
        [ -z "$warnings" ] || { printf '%s\n' "$warnings" >&2; fail "man -l $page warns"; }
done

if [ "$also_usr_local" = --also-usr-local ]; then
        # With the libdir meson picks where dpkg-dev is installed:
        # /usr/local/lib/<multiarch> is in Debian's ld.so.conf, but only an
        # ldconfig run makes the linker see a new library there.
        multiarch=$(gcc -print-multiarch)
        step "--prefix=/usr/local --libdir=lib/$multiarch: meson install, then the installed iommufdctl runs"
        # Only the loader is in question here: no optimisation, no man pages.
        quiet meson setup "$work/build-local" "$src" --prefix=/usr/local --libdir="lib/$multiarch" \
                --buildtype=plain -Dman=disabled
        quiet ninja -C "$work/build-local"
        quiet meson install -C "$work/build-local"
        quiet /usr/local/bin/iommufdctl --version
fi
step "ok"
