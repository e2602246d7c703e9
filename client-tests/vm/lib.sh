# SPDX-License-Identifier: BSD-3-Clause
# lib.sh — harness of the VM tests: a private directory with a 256 MiB origin file, served as origin "disk" by
# either front end, test guests (guest.sh), checks of filesystem images, and cleanup that always runs.
#
# Usage: source lib.sh FRONT-END NBDSNAP SERVER CACHE-DIR
#   FRONT-END nbdsnapd: SERVER is the nbdsnapd binary (--origin disk=ORIGIN);
#             filter:   SERVER is nbdkit-nbdsnap-filter.so, over nbdkit's file plugin with the plugin's default
#                       export named "disk" (nbdsnap-default-origin=disk), so both serve the same export names.
#   CACHE-DIR keeps the guest's initramfs between tests.
# Environment: VM_KEEP=1 keeps the test's directory (consoles, server log, images); VM_VERBOSE=1 runs nbdkit -v.
# Provides (besides functions.sh's): $origin; server_start; server_stop (sets $server_status);
# nbdsnap ARGS (fails the test on a non-zero exit); uri EXPORT; start_guest NAME APPEND EXPORT [RECONNECT];
# check_filesystem IMAGE LABEL; check_files IMAGE SUMS LABEL; copy_image EXPORT FILE; fail; pass.
vm_front_end=${1:?usage: source lib.sh nbdsnapd|filter NBDSNAP SERVER CACHE-DIR}
NBDSNAP=${2:?NBDSNAP}
vm_server=${3:?SERVER}
vm_cache=${4:?CACHE-DIR}
if [[ ${VM_KEEP:-0} == 1 ]]; then KEEP_TEST_DIR=1; fi
source "$(dirname "${BASH_SOURCE[0]}")/../functions.sh"
use_front_end "$vm_front_end" "$vm_server"
source "$(dirname "${BASH_SOURCE[0]}")/guest.sh"
for tool in qemu-system-x86_64 e2fsck debugfs cpio; do
  command -v "$tool" >/dev/null || fail "$tool missing (scripts/install-deps)"
done

origin=$dir/origin.raw
guests=()
test_started=$SECONDS
# A stop under a running guest may take longer than functions.sh's default on a loaded machine.
STOP_TIMEOUT=120

stop_guests() {
  local guest
  for guest in "${guests[@]}"; do
    ((test_status == 0)) || vm_show_console "$guest"
    vm_kill "$guest" >/dev/null 2>&1 || true
  done
  ((test_status == 0)) || echo "--- test failed ($test_status) after $((SECONDS - test_started)) s" >&2
}
cleanup_fn stop_guests
vm_prepare "$vm_cache" || exit 1

pass() { echo "ok ($((SECONDS - test_started)) s): $*"; }

nbdsnap() {
  "$NBDSNAP" "$@" || fail "nbdsnap $* exited $?"
}

# server_start: the origin "disk" served by the front end; nbdkit logs every request only with VM_VERBOSE=1.
server_start() {
  [[ -f $origin ]] || truncate -s 256M "$origin"
  mkdir -p "$state"  # the filter's nbdsnap-state-dir must exist
  if [[ $FRONT_END == nbdsnapd ]]; then
    start_nbdsnapd --origin "disk=$origin"
  else
    NBDKIT_VERBOSE=${VM_VERBOSE:+-v} start_filter file "$origin" \
      nbdsnap-default-origin=disk nbdsnap-state-dir="$state"
  fi
}
server_stop() { stop_server TERM; }

# start_guest NAME APPEND EXPORT [RECONNECT-DELAY]: boots guest $dir/NAME on EXPORT; its directory is
# $dir/NAME (guest.sh).
start_guest() {
  guests+=("$dir/$1")
  vm_start "$dir/$1" "$2" "$sock" "$3" "${4:-}" || fail "guest $1 did not boot"
}

# copy_image EXPORT FILE: a full copy of an export through nbdsnap backup.
copy_image() {
  rm -f "$2" "$2.nbdsnap-backup"
  "$NBDSNAP" backup --image "$(uri "$1")" --to "$2" >/dev/null || fail "copying $1 to $2"
}

# check_filesystem IMAGE LABEL: e2fsck -fn finds nothing to fix.
check_filesystem() {
  e2fsck -fn "$1" >"$1.fsck" 2>&1 || { cat "$1.fsck" >&2; fail "$2: e2fsck -fn found errors"; }
}

# check_files IMAGE SUMS LABEL: every file listed in SUMS ("NAME SHA256" lines) is in /w of the ext4 IMAGE with
# that checksum (read with debugfs: no loop devices needed).
check_files() {
  local files=$1.files count
  count=$(wc -l <"$2")
  rm -rf "$files"
  mkdir "$files"
  debugfs -R "rdump /w $files" "$1" >/dev/null 2>&1 || fail "$3: debugfs cannot read /w"
  awk '{ print $2 "  " $1 }' "$2" >"$files/sums"
  (cd "$files/w" && sha256sum --check --quiet "../sums") >"$files/check" 2>&1 ||
    { head -20 "$files/check" >&2; fail "$3: files fsynced before the take are missing or differ"; }
  rm -rf "$files"
  echo "  $3: $count files, all present with their checksums"
}

# Fails unless the guest's console is free of block-layer and ext4 errors.
check_no_io_errors() {  # NAME
  if vm_console "$dir/$1" | grep -E 'I/O error|EXT4-fs error|Buffer I/O|Aborting journal|Remounting filesystem read-only'; then
    fail "guest $1 saw I/O or filesystem errors"
  fi
}
