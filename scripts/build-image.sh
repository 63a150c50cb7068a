#!/usr/bin/env bash
# scripts/build-image.sh -- builds mcpsonde's container image offline (`make image`).
#
# No registry is needed: the root filesystem is made of this machine's installed Debian
# packages (those owning the shared libraries build/mcpsonde loads, whole, with their
# copyright files) plus build/mcpsonde, then deploy/image/Containerfile is built with podman
# in a private, temporary storage and saved as a docker-archive:
#
#   build/image/mcpsonde-image.tar   tags localhost/mcpsonde:<version> and :latest
#
# Load it with `ctr -n k8s.io images import`, `podman load` or `docker load`, or push it to
# your registry. Nothing is left in podman's system storage.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=build/mcpsonde
out=build/image
version=$(git describe --always --dirty 2>/dev/null || echo unknown)
[[ -x $bin ]] || { echo "build-image.sh: $bin missing: run make first" >&2; exit 1; }
command -v podman >/dev/null || { echo "build-image.sh: podman is missing (scripts/setup.sh installs it)" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/rootfs"
rootfs=$out/rootfs
work=$(mktemp -d /tmp/mcpsonde-image-XXXXXX)
had_containers_dir=$([[ -e /var/lib/containers ]] && echo yes || echo no)
cleanup() {
	rm -rf --one-file-system "$work"
	# podman keeps a blob-info cache in /var/lib/containers whatever its --root: remove it
	# when this script created it.
	[[ $had_containers_dir == no ]] && rm -rf --one-file-system /var/lib/containers
	return 0
}
trap cleanup EXIT

# Debian bookworm is usr-merged: /lib, /bin... are links into /usr.
for d in bin sbin lib lib64; do ln -s "usr/$d" "$rootfs/$d"; done
mkdir -p "$rootfs"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,tmp,proc,sys,dev,run,var/lib/mcpsonde}
chmod 1777 "$rootfs/tmp"

# The packages owning every library the binary loads (and the loader). dpkg's database
# names some files by their pre-usr-merge path, so ask for both spellings.
owner() {
	dpkg -S "$1" 2>/dev/null || dpkg -S "${1#/usr}" 2>/dev/null || dpkg -S "/usr$1" 2>/dev/null ||
		{ echo "build-image.sh: no Debian package owns $1" >&2; return 1; }
}
mapfile -t libs < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
pkgs=()
for lib in "${libs[@]}"; do
	pkgs+=("$(owner "$lib" | head -n1 | cut -d: -f1)")
done
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)

# Each package's files (not its directories: tar creates those), manuals and translations left
# out. --keep-directory-symlink keeps /lib -> usr/lib.
for p in "${pkgs[@]}"; do
	dpkg -L "$p" | while read -r f; do
		[[ -f $f || -L $f ]] && [[ $f != /usr/share/man/* && $f != /usr/share/locale/* ]] && printf '%s\n' "${f#/}"
	done
done | sort -u > "$work/files"
tar -C / --no-recursion -cf - -T "$work/files" | tar -C "$rootfs" --keep-directory-symlink -xf -
install -m 0755 "$bin" "$rootfs/usr/bin/mcpsonde"
dpkg-query -W -f='${Package} ${Version}\n' "${pkgs[@]}" > "$out/packages.txt"

podman_() {
	podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/tmp" --storage-driver vfs \
		--cgroup-manager cgroupfs --events-backend none "$@"
}
cp deploy/image/Containerfile "$out/Containerfile"
podman_ build --quiet --format docker --label "org.opencontainers.image.version=$version" \
	-t "localhost/mcpsonde:$version" -t localhost/mcpsonde:latest -f "$out/Containerfile" "$out" >/dev/null
podman_ save --quiet --format docker-archive -m -o "$out/mcpsonde-image.tar" \
	"localhost/mcpsonde:$version" localhost/mcpsonde:latest
rm -rf "$rootfs" "$out/Containerfile"
echo "build-image.sh: $out/mcpsonde-image.tar (localhost/mcpsonde:$version, :latest; $(wc -l < "$out/packages.txt") Debian packages)"
