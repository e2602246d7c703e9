#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# build-initramfs.sh — builds the initramfs of the nbdsnap test guest from Debian packages installed on this
# machine: busybox-static (the shell and every tool of the guest), the installed kernel's modules for a
# virtio-blk disk with ext4 (virtio_pci, virtio_blk, crc32c, ext4 and what modules.dep says they need), and
# e2fsprogs' mke2fs with its shared libraries (busybox's mke2fs makes ext2 only). guest-init.sh becomes /init.
#
# Usage: build-initramfs.sh KERNEL-VERSION OUTPUT.cpio
# The archive is uncompressed (the kernel unpacks it faster than it would decompress it under TCG) and written
# to OUTPUT.cpio.tmp.PID first, then renamed, so tests building the same cache entry at once do not collide.
set -euo pipefail

version=${1:?usage: build-initramfs.sh KERNEL-VERSION OUTPUT.cpio}
output=${2:?usage: build-initramfs.sh KERNEL-VERSION OUTPUT.cpio}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
modules=/lib/modules/$version
# virtio_pci finds the disk, virtio_blk drives it; ext4 checksums its metadata with crc32c, which it asks the
# crypto API for by name: with no modprobe in the guest, the provider must already be loaded.
wanted_modules=(virtio_pci virtio_blk crc32c_generic ext4)

[[ -f $modules/modules.dep ]] || { echo "build-initramfs: no $modules/modules.dep (linux-image-amd64)" >&2; exit 1; }
if ! [[ -x /bin/busybox ]] || ! /bin/busybox --list | grep -x fsfreeze >/dev/null; then
  echo "build-initramfs: /bin/busybox with fsfreeze missing (busybox-static)" >&2
  exit 1
fi
command -v cpio >/dev/null || { echo "build-initramfs: cpio missing" >&2; exit 1; }

root=$(mktemp -d "${TMPDIR:-/tmp}/nbdsnap-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,mnt,lib/modules}

cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$here/guest-init.sh" "$root/init"

# mke2fs and the libraries the dynamic loader needs for it, at the same paths as on the host.
copy_with_libraries() {  # BINARY
  local library
  mkdir -p "$root$(dirname "$1")"
  cp -L "$1" "$root$1"
  while read -r library; do
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done < <(ldd "$1" | grep -oE '/[^ ]+\.so[^ ]*')
}
copy_with_libraries /sbin/mke2fs
cp /etc/mke2fs.conf "$root/etc/mke2fs.conf"

# Modules in load order: every module after the ones it depends on (modules.dep lists each module's full
# dependency closure, so a depth-first walk that skips loaded modules gives a valid order).
declare -A dependencies=() path_of=() listed=()
module_name() {  # PATH: the name the kernel knows a module by (no subprocess: modules.dep has 4000+ lines)
  local name=${1##*/}
  name=${name%.ko}
  module_name_result=${name//-/_}
}
while IFS=: read -r module deps; do
  module_name "$module"
  path_of[$module_name_result]=$module
  dependencies[$module_name_result]=$deps
done <"$modules/modules.dep"
order=()
add_module() {  # NAME (or a path from modules.dep)
  local name dep
  module_name "$1"
  name=$module_name_result
  [[ -n ${listed[$name]:-} ]] && return 0
  [[ -n ${path_of[$name]:-} ]] || { echo "build-initramfs: module $name not in $modules/modules.dep" >&2; exit 1; }
  listed[$name]=1
  for dep in ${dependencies[$name]}; do add_module "$dep"; done
  order+=("${path_of[$name]}")
}
for module in "${wanted_modules[@]}"; do add_module "$module"; done
for module in "${order[@]}"; do
  cp "$modules/$module" "$root/lib/modules/"
  basename "$module" >>"$root/lib/modules/load-order"
done

mkdir -p "$(dirname "$output")"
(cd "$root" && find . -print0 | cpio --null --quiet -o -H newc) >"$output.tmp.$$"
mv -f "$output.tmp.$$" "$output"
