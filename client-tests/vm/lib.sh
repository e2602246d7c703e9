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
# Provides: $tmp, $sock, $origin, $NBDSNAP_CONTROL; server_start; server_stop (sets $server_status);
# nbdsnap ARGS (fails the test on a non-zero exit); uri EXPORT; start_guest NAME APPEND EXPORT [RECONNECT];
# check_filesystem IMAGE LABEL; check_files IMAGE SUMS LABEL; copy_image EXPORT FILE; fail; pass.
set -euo pipefail

vm_front_end=${1:?usage: source lib.sh nbdsnapd|filter NBDSNAP SERVER CACHE-DIR}
NBDSNAP=${2:?NBDSNAP}
vm_server=${3:?SERVER}
vm_cache=${4:?CACHE-DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/guest.sh"

case $vm_front_end in
  nbdsnapd) ;;
  filter) case $vm_server in */*) ;; *) vm_server=./$vm_server ;; esac ;;  # nbdkit loads a filter by path
  *) echo "lib.sh: front end must be nbdsnapd or filter, not '$vm_front_end'" >&2; exit 2 ;;
esac
for tool in qemu-system-x86_64 e2fsck debugfs cpio; do
  command -v "$tool" >/dev/null || { echo "lib.sh: $tool missing (scripts/install-deps)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/nbdsnap-vm-test.XXXXXX)
sock=$tmp/nbd.sock
export NBDSNAP_CONTROL=$tmp/control.sock
state=$tmp/state
origin=$tmp/origin.raw
server_pid=
guests=()
test_started=$SECONDS

cleanup() {
  local status=$? guest
  set +e  # a failing step here must not keep the rest of the cleanup from running
  for guest in "${guests[@]}"; do
    ((status == 0)) || vm_show_console "$guest"
    vm_kill "$guest" >/dev/null 2>&1 || true
  done
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  if grep -qE 'ERROR: (Address|Thread)Sanitizer|runtime error:' "$tmp/server.log" 2>/dev/null; then
    echo "--- sanitizer report in the server's log:" >&2
    grep -hE -A30 'ERROR: (Address|Thread)Sanitizer|runtime error:' "$tmp/server.log" | head -80 >&2
    ((status != 0)) || status=1
  fi
  if ((status != 0)); then
    echo "--- test failed ($status) after $((SECONDS - test_started)) s; server log:" >&2
    grep -v 'debug:' "$tmp/server.log" 2>/dev/null | tail -n 30 >&2 || true
  fi
  if [[ ${VM_KEEP:-0} == 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
  exit $status
}
trap cleanup EXIT INT TERM
vm_prepare "$vm_cache" || exit 1

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok ($((SECONDS - test_started)) s): $*"; }
uri() { echo "nbd+unix:///$1?socket=$sock"; }

nbdsnap() {
  "$NBDSNAP" "$@" || fail "nbdsnap $* exited $?"
}

server_start() {
  local _
  rm -f "$sock" "$NBDSNAP_CONTROL"
  mkdir -p "$state"
  [[ -f $origin ]] || truncate -s 256M "$origin"
  case $vm_front_end in
    nbdsnapd)
      setsid "$vm_server" --origin "disk=$origin" --listen "unix:$sock" --control "$NBDSNAP_CONTROL" \
        --state-dir "$state" </dev/null >>"$tmp/server.log" 2>&1 & ;;
    filter)
      # NBDSNAP_NBDKIT_PRELOAD: the sanitizer runtime an instrumented filter needs, for nbdkit only; with it,
      # -v makes the filter's unload message visible to server_stop. VM_VERBOSE=1 logs every request.
      setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} \
        nbdkit -f ${NBDSNAP_NBDKIT_PRELOAD:+-v} ${VM_VERBOSE:+-v} -U "$sock" --filter="$vm_server" file "$origin" \
        nbdsnap-default-origin=disk nbdsnap-control="$NBDSNAP_CONTROL" nbdsnap-state-dir="$state" \
        </dev/null >>"$tmp/server.log" 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 600); do
    [[ -S $sock && -S $NBDSNAP_CONTROL ]] && return 0
    kill -0 "$server_pid" 2>/dev/null || fail "$vm_front_end exited at start"
    sleep 0.1
  done
  fail "$vm_front_end did not start within 60 s"
}

# server_stop: SIGTERM, then waits (bounded) for the exit; $server_status is its exit status.
server_stop() {
  local deadline=$((SECONDS + 120)) killed_after_unload=
  kill -TERM "$server_pid"
  while kill -0 "$server_pid" 2>/dev/null; do
    # Under a preloaded sanitizer nbdkit can hang in glibc's exit handlers after the filter unloaded cleanly
    # (client-tests/filter/lib.sh); once the filter says so, nothing of ours is left to check, and the SIGKILL
    # that ends the hang is ours, not a failure of the server.
    if [[ -n ${NBDSNAP_NBDKIT_PRELOAD:-} ]] && grep -qs "nbdsnap: unloaded, CBT state saved" "$tmp/server.log"; then
      sleep 5
      if kill -0 "$server_pid" 2>/dev/null; then
        echo "note: nbdkit hung in exit handlers after the filter unloaded; killing it" >&2
        kill -KILL "$server_pid" 2>/dev/null && killed_after_unload=1
      fi
    fi
    ((SECONDS < deadline)) || fail "$vm_front_end $server_pid did not stop within 120 s of SIGTERM"
    sleep 0.1
  done
  server_status=0
  wait "$server_pid" || server_status=$?
  [[ -n $killed_after_unload ]] && server_status=0
  server_pid=
}

# start_guest NAME APPEND EXPORT [RECONNECT-DELAY]: boots guest $tmp/NAME on EXPORT; its directory is
# $tmp/NAME (guest.sh).
start_guest() {
  guests+=("$tmp/$1")
  vm_start "$tmp/$1" "$2" "$sock" "$3" "${4:-}" || fail "guest $1 did not boot"
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
  if vm_console "$tmp/$1" | grep -E 'I/O error|EXT4-fs error|Buffer I/O|Aborting journal|Remounting filesystem read-only'; then
    fail "guest $1 saw I/O or filesystem errors"
  fi
}
