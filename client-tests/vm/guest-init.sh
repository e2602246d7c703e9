#!/bin/busybox sh
# SPDX-License-Identifier: BSD-3-Clause
# guest-init.sh — /init (PID 1) of the nbdsnap test guest, run by busybox's shell. It mounts the guest's one
# virtio-blk disk /dev/vda (the NBD export under test) at /mnt, formatting it ext4 first when asked, optionally
# starts a writer, and then serves commands from the host.
#
# Kernel command line (read from /proc/cmdline):
#   nbdsnap.format=1         mkfs.ext4 /dev/vda before mounting it
#   nbdsnap.writer=PREFIX    start the writer: files /mnt/w/PREFIXnnnnnn, 16-128 KiB of random bytes each
#   nbdsnap.pause=SECONDS    the writer's pause between files (default 0.2, bounding the disk it fills)
#
# Console (ttyS0, a file on the host): everything the host checks is one line starting with "nbdsnap-guest:".
#   nbdsnap-guest: ready                 the disk is mounted, commands are served
#   nbdsnap-guest: fsynced NAME SHA256   the writer's fsync of /mnt/w/NAME returned; SHA256 of what it wrote
#   nbdsnap-guest: file NAME SHA256      a line of the answer to "list"
#   nbdsnap-guest: cmd ID ok|failed N    the end of command ID (N: its exit status)
# Commands (ttyS1, a pipe on the host), one per line "ID COMMAND [ARGS]":
#   freeze | thaw        fsfreeze --freeze /mnt | --unfreeze /mnt (busybox: the FIFREEZE/FITHAW ioctls)
#   stop-writer          stop the writer after its current file and wait for it
#   list                 the SHA-256 of every file in /mnt/w
#   write PREFIX COUNT   write COUNT files as the writer does, now, logging each fsync
#   bench MIB            rewrite /mnt/bench (created at MIB MiB on first use) with O_DIRECT 1 MiB writes and
#                        print "nbdsnap-guest: bench MIB MiB in MS ms"
#   poweroff             sync, unmount /mnt and power off
export PATH=/bin:/sbin
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/ttyS0 2>&1

say() { echo "nbdsnap-guest: $*"; }
die() {
  say "FATAL: $*"
  poweroff -f
  sleep 3600
}

format=0 writer_prefix='' writer_pause=0.2
for word in $(cat /proc/cmdline); do
  case $word in
    nbdsnap.format=*) format=${word#*=} ;;
    nbdsnap.writer=*) writer_prefix=${word#*=} ;;
    nbdsnap.pause=*) writer_pause=${word#*=} ;;
  esac
done

while read -r module; do
  insmod "/lib/modules/$module" || die "insmod $module failed"
done </lib/modules/load-order

for _ in $(seq 300); do [ -b /dev/vda ] && break; sleep 0.1; done
[ -b /dev/vda ] || die "no /dev/vda"
if [ "$format" = 1 ]; then
  # Inode tables and journal initialised now, so that no lazy-init thread writes behind the tests' back.
  /sbin/mke2fs -q -F -t ext4 -E lazy_itable_init=0,lazy_journal_init=0 /dev/vda || die "mke2fs failed"
fi
mount -t ext4 /dev/vda /mnt || die "mount /dev/vda failed"
mkdir -p /mnt/w || die "mkdir /mnt/w failed"

# write_file NAME: one file of random bytes, made in memory first so its checksum is known before the write,
# then written and fsynced (dd conv=fsync); logged only once the fsync returned.
write_file() {
  local size sum
  size=$(( ($(head -c 1 /dev/urandom | od -An -tu1) % 8 + 1) * 16 ))
  head -c $((size * 1024)) /dev/urandom >/tmp/next
  sum=$(sha256sum /tmp/next | cut -d' ' -f1)
  dd if=/tmp/next of="/mnt/w/$1" bs=16k conv=fsync 2>/dev/null || { say "write $1 failed"; return 1; }
  say "fsynced $1 $sum"
}

writer() {  # PREFIX
  local i=0
  while [ ! -e /tmp/stop-writer ]; do
    i=$((i + 1))
    write_file "$(printf '%s%06d' "$1" $i)" || sleep 1
    sleep "$writer_pause"
  done
}

# uptime_ms: the guest's uptime in milliseconds (busybox's date has no sub-second format; /proc/uptime has
# hundredths).
uptime_ms() {
  local seconds
  read -r seconds _ </proc/uptime
  echo $(( ${seconds%.*} * 1000 + 1${seconds#*.} * 10 - 1000 ))
}

bench() {  # MIB
  local start end
  [ -e /mnt/bench ] || dd if=/dev/zero of=/mnt/bench bs=1M count="$1" conv=fsync 2>/dev/null || return 1
  start=$(uptime_ms)
  dd if=/dev/zero of=/mnt/bench bs=1M count="$1" oflag=direct conv=notrunc,fsync 2>/dev/null || return 1
  end=$(uptime_ms)
  say "bench $1 MiB in $((end - start)) ms"
}

run_command() {  # COMMAND ARGS...
  case $1 in
    freeze) fsfreeze --freeze /mnt ;;
    thaw) fsfreeze --unfreeze /mnt ;;
    stop-writer)
      touch /tmp/stop-writer
      [ -z "$writer_pid" ] && return 0
      for _ in $(seq 600); do kill -0 "$writer_pid" 2>/dev/null || return 0; sleep 0.1; done
      return 1 ;;
    list) for f in /mnt/w/*; do [ -f "$f" ] && say "file ${f##*/} $(sha256sum "$f" | cut -d' ' -f1)"; done ;;
    write)
      local i=0
      while [ $i -lt "$3" ]; do i=$((i + 1)); write_file "$(printf '%s%06d' "$2" $i)" || return 1; done ;;
    bench) bench "$2" ;;
    poweroff) sync && umount /mnt && poweroff -f ;;
    *) say "unknown command $1"; return 2 ;;
  esac
}

writer_pid=
if [ -n "$writer_prefix" ]; then
  writer "$writer_prefix" &
  writer_pid=$!
fi
# The command port: raw, no echo (an echo would fill the host's pipe that nobody reads).
stty -F /dev/ttyS1 raw -echo || die "stty ttyS1 failed"
say ready
while :; do
  while read -r id command args; do
    [ -n "$id" ] || continue
    status=0
    run_command "$command" $args || status=$?
    if [ $status = 0 ]; then say "cmd $id ok"; else say "cmd $id failed $status"; fi
  done </dev/ttyS1
  sleep 0.1
done
