#!/bin/bash
# Runs inside a minimal Debian chroot (run-chroot-builds.sh sets it up): build
# the `meson dist` tarball as a packager would (the suite's dpkg-buildflags,
# meson's default libdir), with -Werror, run the unit tests, install into a
# DESTDIR and then into the chroot's own /usr, and check that what got
# installed runs and that its man pages render. Then, as asked:
#   --also-usr-local         the same with --prefix=/usr/local
#   --also-without-dpkg-dev  a user's build where meson cannot ask
#                            dpkg-architecture, so picks libdir lib64
#   build-in-chroot.sh SUITE DIST_TARBALL [UAPI_DIR] [--also-...]
set -euo pipefail

suite=$1 dist=$2 uapi_dir=${3:-} also=${4:-}
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

libdir_of() {
        meson introspect --buildoptions "$1" |
                python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"][0])'
}

# What debhelper would use: hardening, _FORTIFY_SOURCE (warn_unused_result), ...
eval "$(dpkg-buildflags --export=sh)"
step "meson setup --prefix=/usr -Dwerror=true ($(gcc -dumpfullversion), meson $(meson --version), linux headers $(dpkg-query -W -f='${Version}' linux-libc-dev)), with dpkg-buildflags: $CFLAGS $CPPFLAGS $LDFLAGS"
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
step "meson install into /usr (libdir $(libdir_of "$work/build")), then the installed programs run"
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

# The extra builds check only where the installed programs find their
# library: no optimisation, no man pages, no packager flags.
unset CFLAGS CPPFLAGS CXXFLAGS LDFLAGS FFLAGS FCFLAGS OBJCFLAGS OBJCXXFLAGS
case $also in
--also-usr-local)
        # /usr/local/lib/<multiarch> is in Debian's ld.so.conf, but only an
        # ldconfig run makes the linker see a new library there.
        quiet meson setup "$work/build-local" "$src" --prefix=/usr/local --buildtype=plain -Dman=disabled
        step "--prefix=/usr/local (libdir $(libdir_of "$work/build-local")): meson install, then the installed iommufdctl runs"
        quiet ninja -C "$work/build-local"
        quiet meson install -C "$work/build-local"
        quiet /usr/local/bin/iommufdctl --version
        ;;
--also-without-dpkg-dev)
        # As if dpkg-dev were not installed: meson then picks lib64, which
        # Debian's linker does not search (what the issue saw on trixie).
        mkdir -p "$work/no-dpkg-dev"
        printf '#!/bin/sh\nexit 1\n' > "$work/no-dpkg-dev/dpkg-architecture"
        chmod +x "$work/no-dpkg-dev/dpkg-architecture"
        PATH=$work/no-dpkg-dev:$PATH quiet meson setup "$work/build-nodpkg" "$src" --prefix=/usr \
                --buildtype=plain -Dman=disabled
        step "without dpkg-dev (libdir $(libdir_of "$work/build-nodpkg")): meson install into /usr, then the installed iommufdctl runs"
        quiet ninja -C "$work/build-nodpkg"
        quiet meson install -C "$work/build-nodpkg"
        quiet /usr/bin/iommufdctl --version
        ;;
esac
step "ok"
