# SPDX-License-Identifier: BSD-3-Clause
# guest.sh — runs the nbdsnap test guest: a Debian kernel and the initramfs of build-initramfs.sh under QEMU
# (TCG: KVM guests hang on these machines), its disk an NBD export, its console a file, its commands a pipe.
# Sourcing it defines functions only; the VM tests, guest-command (the take hooks) and scripts/demo use it.
#
# Each guest lives in a directory VMDIR: console.log (ttyS0), cmd.in/cmd.out (ttyS1, a QEMU pipe chardev),
# qemu.pid, qemu.log (QEMU's own messages). guest-init.sh describes the lines and commands.
#
#   vm_prepare CACHE-DIR          sets vm_kernel and vm_initramfs, building the initramfs once per kernel and
#                                 version of the guest files (CACHE-DIR/KERNEL-HASH.cpio)
#   vm_start VMDIR APPEND SOCKET EXPORT [RECONNECT-DELAY]
#                                 boots a guest on nbd+unix:///EXPORT?socket=SOCKET, waits until it is ready
#   vm_command VMDIR COMMAND [ARGS]   sends a command, waits for its end; fails if it failed
#   vm_fsynced VMDIR              prints "NAME SHA256" for every fsync the writer reported so far
#   vm_wait_fsynced VMDIR COUNT SECONDS   waits until the writer reported COUNT fsyncs in all
#   vm_poweroff VMDIR             clean shutdown (unmount, power off), waits for QEMU to exit
#   vm_kill VMDIR                 SIGKILL to QEMU: the guest stops as if the host lost power
# Every wait has a bound; failures print the end of the guest's console and return 1.

vm_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${VM_COMMAND_TIMEOUT:=120}"  # seconds; TCG on a busy 2-core machine is slow, and freeze flushes the journal
: "${VM_BOOT_TIMEOUT:=180}"

vm_fail() {
  echo "FAIL: $*" >&2
  return 1
}

vm_prepare() {  # CACHE-DIR
  local cache=$1 version key
  vm_kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
  [[ -n $vm_kernel ]] || { vm_fail "no /boot/vmlinuz-* (install linux-image-amd64)"; return 1; }
  version=${vm_kernel#/boot/vmlinuz-}
  key=$(cat "$vm_here/build-initramfs.sh" "$vm_here/guest-init.sh" /bin/busybox | sha256sum | cut -c1-12)
  vm_initramfs=$cache/initramfs-$version-$key.cpio
  if [[ ! -s $vm_initramfs ]]; then
    "$vm_here/build-initramfs.sh" "$version" "$vm_initramfs" || { vm_fail "building the initramfs"; return 1; }
  fi
}

vm_console() {  # VMDIR: the guest's console without carriage returns
  [[ -f $1/console.log ]] && tr -d '\r' <"$1/console.log"
  return 0
}

vm_show_console() {  # VMDIR
  echo "--- last lines of the console of guest $(basename "$1"):" >&2
  vm_console "$1" | tail -n 25 >&2
  [[ -s $1/qemu.log ]] && { echo "--- qemu:" >&2; tail -n 10 "$1/qemu.log" >&2; }
  return 0
}

vm_running() {  # VMDIR
  [[ -f $1/qemu.pid ]] && kill -0 "$(cat "$1/qemu.pid")" 2>/dev/null
}

# vm_wait_line VMDIR REGEX SECONDS: waits for a console line "nbdsnap-guest: REGEX" (extended regex).
# (grep reads all of its input here, never -q: under pipefail, a grep that stops early kills the producer with
# SIGPIPE once the console outgrows a pipe's buffer, and the match would count as a failure.)
vm_wait_line() {
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    vm_console "$1" | grep -E "nbdsnap-guest: $2" >/dev/null && return 0
    if vm_console "$1" | grep 'nbdsnap-guest: FATAL' >/dev/null; then
      vm_show_console "$1"; vm_fail "guest $(basename "$1") failed"; return 1
    fi
    vm_running "$1" || { vm_show_console "$1"; vm_fail "guest $(basename "$1") exited"; return 1; }
    sleep 0.2
  done
  vm_show_console "$1"
  vm_fail "guest $(basename "$1"): no line /$2/ after $3 s"
}

vm_start() {  # VMDIR APPEND SOCKET EXPORT [RECONNECT-DELAY]
  local dir=$1 append=$2 socket=$3 export=$4 reconnect=${5:-}
  [[ -n ${vm_kernel:-} && -n ${vm_initramfs:-} ]] || { vm_fail "vm_prepare first"; return 1; }
  mkdir -p "$dir"
  rm -f "$dir/console.log" "$dir/cmd.in" "$dir/cmd.out"
  mkfifo "$dir/cmd.in" "$dir/cmd.out"
  # QEMU's NBD block driver straight under virtio-blk: the guest's flushes (fsync) reach the server as NBD
  # flushes; with reconnect-delay, requests wait that long for the server to come back instead of failing.
  # No setsid: QEMU stays in the caller's process group, so a test killed on its timeout (ctest kills the
  # group) or interrupted does not leave a guest spinning a core.
  qemu-system-x86_64 -accel tcg -machine pc -m 256 -smp 1 -nodefaults -no-user-config -display none \
    -no-reboot -kernel "$vm_kernel" -initrd "$vm_initramfs" \
    -append "console=ttyS0 loglevel=4 panic=-1 $append" \
    -chardev "file,id=console,path=$dir/console.log" -serial chardev:console \
    -chardev "pipe,id=command,path=$dir/cmd" -serial chardev:command \
    -blockdev "driver=nbd,node-name=disk,server.type=unix,server.path=$socket,export=$export${reconnect:+,reconnect-delay=$reconnect}" \
    -device virtio-blk-pci,drive=disk \
    </dev/null >"$dir/qemu.log" 2>&1 &
  echo $! >"$dir/qemu.pid"
  vm_wait_line "$dir" ready "$VM_BOOT_TIMEOUT"
}

vm_command() {  # VMDIR COMMAND [ARGS...]
  local dir=$1 id status
  shift
  id=$(date +%s%N)-$$
  vm_running "$dir" || { vm_fail "guest $(basename "$dir") is not running"; return 1; }
  echo "$id $*" >"$dir/cmd.in"
  vm_wait_line "$dir" "cmd $id (ok|failed [0-9]+)" "$VM_COMMAND_TIMEOUT" || return 1
  status=$(vm_console "$dir" | grep -oE "nbdsnap-guest: cmd $id (ok|failed [0-9]+)" | tail -1)
  [[ $status == *" ok" ]] || { vm_show_console "$dir"; vm_fail "guest command '$*': $status"; return 1; }
}

vm_fsynced() {  # VMDIR
  vm_console "$1" | grep -oE 'nbdsnap-guest: fsynced [^ ]+ [0-9a-f]{64}' | cut -d' ' -f3,4
}

vm_wait_fsynced() {  # VMDIR COUNT SECONDS
  local deadline=$((SECONDS + $3))
  while (($(vm_fsynced "$1" | wc -l) < $2)); do
    if ((SECONDS >= deadline)) || ! vm_running "$1"; then
      vm_show_console "$1"
      vm_fail "guest $(basename "$1") reported $(vm_fsynced "$1" | wc -l) fsyncs, not $2, within $3 s"
      return 1
    fi
    sleep 0.2
  done
}

vm_wait_exit() {  # VMDIR SECONDS
  local pid deadline=$((SECONDS + $2))
  pid=$(cat "$1/qemu.pid")
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || { vm_fail "QEMU $pid did not exit within $2 s"; return 1; }
    sleep 0.2
  done
  rm -f "$1/qemu.pid"
}

vm_poweroff() {  # VMDIR
  echo "$(date +%s%N)-$$ poweroff" >"$1/cmd.in"
  vm_wait_exit "$1" "$VM_COMMAND_TIMEOUT" || { vm_show_console "$1"; return 1; }
}

vm_kill() {  # VMDIR
  local pid
  [[ -f $1/qemu.pid ]] || return 0
  pid=$(cat "$1/qemu.pid")
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true  # reaps a child of this shell without its "Killed" notice
  vm_wait_exit "$1" 30
}
