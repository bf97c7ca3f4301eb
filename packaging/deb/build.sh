#!/usr/bin/env bash
# Builds the Debian package of pmmux with dpkg-deb (no tool beyond dpkg and binutils):
#
#   packaging/deb/build.sh                 # cargo build --release, then target/pmmux_<version>_<arch>.deb
#   packaging/deb/build.sh --from DIR      # package the pmmux and libpmmux_*.so already built in DIR
#   packaging/deb/build.sh --out DIR       # write the .deb into DIR (default: target/)
#   packaging/deb/build.sh --fast          # gzip -1 instead of xz (the end-to-end test uses it)
#
# The package holds /usr/bin/pmmux, the plugins in /usr/lib/pmmux/plugins (root-owned, 0644, in a
# 0755 folder: what pmmux's plugin permission check wants), /etc/pmmux/pmmux.toml as a conffile
# (config/pmmux.toml pointing at the packaged plugins), the systemd unit (config/pmmux.service with
# the packaged paths and a fixed `pmmux` system user) and the maintainer scripts beside this file.
# Every binary is stripped of debug info (a release build already is; a debug build given with
# --from is stripped here). Prints the path of the .deb on its last line.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/packaging/deb"
from=""
out="$root/target"
compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$from" ]; then
  (cd "$root" && cargo build --release)
  from="${CARGO_TARGET_DIR:-$root/target}/release"
fi
[ -x "$from/pmmux" ] || { echo "build.sh: no pmmux executable in $from" >&2; exit 1; }
shopt -s nullglob
plugins=("$from"/libpmmux_*.so)
[ ${#plugins[@]} -gt 0 ] || { echo "build.sh: no libpmmux_*.so plugin in $from" >&2; exit 1; }

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/host/Cargo.toml" | head -n 1)"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/pmmux/plugins" "$stage/etc/pmmux" \
  "$stage/lib/systemd/system" "$stage/usr/share/doc/pmmux"
install -m 0755 "$from/pmmux" "$stage/usr/bin/pmmux"
strip --strip-debug "$stage/usr/bin/pmmux"
for p in "${plugins[@]}"; do
  install -m 0644 "$p" "$stage/usr/lib/pmmux/plugins/"
  strip --strip-debug "$stage/usr/lib/pmmux/plugins/$(basename "$p")"
done

# The annotated default configuration, reading the packaged plugins.
sed -e 's|^plugin_dir = "plugins"$|plugin_dir = "/usr/lib/pmmux/plugins"|' \
    -e '/^#   cargo build --release/,/--config config\/pmmux.toml$/c\
#   installed by the pmmux package: systemctl enable --now pmmux, or run it in a terminal with\
#   /usr/bin/pmmux --config /etc/pmmux/pmmux.toml' \
    -e 's|target/release/pmmux check-config config/pmmux.toml|pmmux check-config /etc/pmmux/pmmux.toml|' \
    "$root/config/pmmux.toml" > "$stage/etc/pmmux/pmmux.toml"
grep -q '^plugin_dir = "/usr/lib/pmmux/plugins"$' "$stage/etc/pmmux/pmmux.toml" \
  || { echo "build.sh: config/pmmux.toml has no plugin_dir = \"plugins\" line to point at the package" >&2; exit 1; }

# The unit, with the packaged paths and the package's system user instead of DynamicUser.
sed -e '1,/^$/d' \
    -e 's|/usr/local/bin/pmmux|/usr/bin/pmmux|g' \
    -e 's|/usr/local/lib/pmmux|/usr/lib/pmmux|g' \
    -e 's|/usr/local/share/doc/pmmux/README.md|/usr/share/doc/pmmux/README.md|' \
    -e 's|^DynamicUser=yes$|User=pmmux\nGroup=pmmux|' \
    "$root/config/pmmux.service" > "$stage/lib/systemd/system/pmmux.service"
chmod 0644 "$stage/etc/pmmux/pmmux.toml" "$stage/lib/systemd/system/pmmux.service"
grep -q '^User=pmmux$' "$stage/lib/systemd/system/pmmux.service" \
  || { echo "build.sh: config/pmmux.service has no DynamicUser=yes line to replace" >&2; exit 1; }

install -m 0644 "$root/README.md" "$stage/usr/share/doc/pmmux/README.md"
printf 'pmmux\nLicense: MIT OR Apache-2.0\n' > "$stage/usr/share/doc/pmmux/copyright"
chmod 0644 "$stage/usr/share/doc/pmmux/copyright"

for s in postinst prerm postrm; do
  install -m 0755 "$here/$s" "$stage/DEBIAN/$s"
done
echo /etc/pmmux/pmmux.toml > "$stage/DEBIAN/conffiles"
size_kb="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<EOF
Package: pmmux
Version: $version
Architecture: $arch
Maintainer: pmmux developers <pmmux@example.invalid>
Installed-Size: $size_kb
Depends: libc6
Section: net
Priority: optional
Homepage: https://example.invalid/pmmux
Description: port multiplexer whose backends are plugins
 One process listens on TCP and UDP ports, detects each connection's protocol
 (SSH, TLS by SNI, HTTP by Host, DNS, QUIC, ...) with plugins loaded at run
 time, and relays it to the backend chosen. Plugins can be added and replaced
 without a restart.
EOF

mkdir -p "$out"
deb="$out/pmmux_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$stage" "$deb" >&2
echo "$deb"
