#!/bin/bash
# Build the VM tier's kernel from Debian's newest linux-source-7.x package.
#
# The result is cached outside the repository, keyed by the source package
# version and a hash of the config recipe, so a second run takes seconds.
# Prints the path of the bzImage as the last line of stdout.
set -euo pipefail

# The whole script is one compound command, so bash parses it completely
# before running: editing the file during a 20-minute build cannot break
# the running build (it once died with "unexpected EOF" that way).
{
here=$(cd "$(dirname "$0")" && pwd)
cache=${IOMMUFD_TEST_CACHE:-/var/cache/iommufd-broker-test}
fragment=$here/kernel.config
log() { echo "build-kernel: $*" >&2; }

mkdir -p "$cache/apt/lists/partial" "$cache/src" "$cache/kernel"

# Reach trixie-backports and sid through apt options, never the system's sources.
cat > "$cache/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian trixie-backports main
deb http://deb.debian.org/debian sid main
EOF
apt_opts=(-o "Dir::Etc::SourceList=$cache/apt/sources.list"
          -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$cache/apt/lists"
          -o Debug::NoLocking=1)

if ! apt-get "${apt_opts[@]}" -qq update >/dev/null 2>&1; then
        log "apt update failed; using cached package lists"
fi

# Newest linux-source-7.N by minor number, then that package's candidate version.
pkg=$(apt-cache "${apt_opts[@]}" pkgnames linux-source-7. 2>/dev/null |
      grep -E '^linux-source-7\.[0-9]+$' | sort -V | tail -n1 || true)
version=
[ -n "$pkg" ] && version=$(apt-cache "${apt_opts[@]}" policy "$pkg" | awk '/Candidate:/ {print $2}')
if [ -z "$pkg" ] || [ -z "$version" ] || [ "$version" = "(none)" ]; then
        # Offline: fall back to the newest package already downloaded.
        deb=$(ls "$cache"/src/linux-source-7.*_all.deb 2>/dev/null | sort -V | tail -n1 || true)
        [ -n "$deb" ] || { log "no linux-source-7.x available"; exit 1; }
        pkg=$(basename "$deb" | cut -d_ -f1)
        version=$(dpkg-deb -f "$deb" Version)
fi
deb=$cache/src/${pkg}_${version//:/%3a}_all.deb
if [ ! -s "$deb" ]; then
        log "downloading $pkg $version"
        (cd "$cache/src" && apt-get "${apt_opts[@]}" -qq download "$pkg=$version" 2>/dev/null)
fi
[ -s "$deb" ] || deb=$(ls "$cache"/src/"${pkg}"_*_all.deb | sort -V | tail -n1)

# Bump recipe when the steps below change in a way that alters the image.
recipe=1
recipe_hash=$( (cat "$fragment"; echo "recipe=$recipe") | sha256sum | cut -c1-12)
key=${version//[:~+]/_}-$recipe_hash
out=$cache/kernel/$key
if [ -s "$out/bzImage" ]; then
        log "cached: $pkg $version ($out)"
        echo "$out/bzImage"
        exit 0
fi

srcdir=$cache/src/$pkg-${version//[:~+]/_}
if [ ! -f "$srcdir/.extracted" ]; then
        log "extracting $pkg $version"
        rm -rf "$srcdir" && mkdir -p "$srcdir"
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$srcdir" --wildcards '*.tar.xz'
        tarball=$(find "$srcdir" -name 'linux-source-*.tar.xz' | head -n1)
        tar -xJf "$tarball" -C "$srcdir"
        rm -f "$tarball"
        touch "$srcdir/.extracted"
fi
tree=$(find "$srcdir" -mindepth 1 -maxdepth 3 -type f -name Kbuild -printf '%h\n' | head -n1)

obj=$out.build
mkdir -p "$obj"
log "configuring $pkg $version in $obj"
(cd "$tree" && KCONFIG_CONFIG="$obj/.config" scripts/kconfig/merge_config.sh -m -O "$obj" \
        arch/x86/configs/x86_64_defconfig kernel/configs/kvm_guest.config "$fragment" >/dev/null)
make -C "$tree" O="$obj" olddefconfig >/dev/null

# Every option the fragment asks for must have survived olddefconfig.
missing=0
while IFS= read -r line; do
        case $line in CONFIG_*=y) grep -qx "$line" "$obj/.config" || { log "option lost: $line"; missing=1; } ;; esac
done < "$fragment"
[ "$missing" = 0 ] || exit 1

log "building bzImage with $(nproc) jobs (about 15-25 minutes on 2 cores)"
start=$SECONDS
make -C "$tree" O="$obj" -j"$(nproc)" bzImage > "$obj/build.log" 2>&1 ||
        { tail -n 40 "$obj/build.log" >&2; exit 1; }
mkdir -p "$out"
cp "$obj/arch/x86/boot/bzImage" "$out/bzImage.tmp"
cp "$obj/.config" "$out/config"
mv "$out/bzImage.tmp" "$out/bzImage"
rm -rf "$obj"
log "built in $((SECONDS - start)) s: $out/bzImage"
echo "$out/bzImage"
exit 0
}
