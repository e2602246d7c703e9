#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-restore-interrupted.sh — a restore that fails or is stopped half-way never leaves a target that looks
# like a good restore: a file target is written as FILE.partial-restore.PID and renamed over FILE only when
# complete. Stopped by SIGTERM (or SIGHUP; SIGINT alike), the partial file is removed and FILE is as it was; killed by
# SIGKILL, FILE is as it was (or absent) and the clearly named partial file is removed by the next restore to
# FILE; qemu-nbd dying mid-way fails the restore (exit 4) saying FILE is left as it was, and removes the partial
# file. A block device, which cannot be renamed, is named as holding a partial restore. It used to truncate FILE
# first and leave it half-written. The restore is made slow and the moment deterministic by a qemu-nbd wrapper
# first in PATH that reads the chain through a QEMU throttle node (1 MiB/s).
# Usage: test-cli-restore-interrupted.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires qemu-img --version
requires qemu-nbd --version

truncate -s 16M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"
chain=$dir/chain
write 0x11 0 8M disk
run_cli 0 snapshot create s1 --origin disk --storage "$dir/s1.diff:32M"
run_cli 0 snapshot take s1
cp --sparse=always "$dir/disk.img" "$dir/at-s1.img"
run_cli 0 backup --image "$(uri disk@s1)" --to "$chain" --format qcow2
run_cli 0 snapshot destroy s1

real_qemu_nbd=$(command -v qemu-nbd)
mkdir "$dir/wrap"
cat >"$dir/wrap/qemu-nbd" <<WRAPPER
#!/usr/bin/env bash
# qemu-nbd ARGS... FILE (as nbdsnap runs it), FILE read through a throttle node at 1 MiB/s.
args=()
for arg in "\$@"; do [[ \$arg == --format=* ]] || args+=("\$arg"); done
file=\${args[-1]}
unset 'args[-1]'
exec "$real_qemu_nbd" "\${args[@]}" --object throttle-group,id=slow,x-bps-read=1048576 \\
  --image-opts "driver=throttle,throttle-group=slow,file.driver=qcow2,file.file.filename=\$file"
WRAPPER
chmod +x "$dir/wrap/qemu-nbd"

head -c 16M /dev/zero | tr '\0' '\167' >"$dir/old.img"
old_sum=$(md5sum <"$dir/old.img")

target_sum() { if [[ -e $1 ]]; then md5sum <"$1"; fi; }
# slow_restore TARGET: starts a throttled restore in the background ($restore_pid) and returns once it is
# writing: its partial file exists, or (as restores used to) the target changed.
slow_restore() {
  local i target=$1 before
  before=$(target_sum "$target")
  PATH=$dir/wrap:$PATH "$NBDSNAP" restore "$chain" --to "$target" --connections 1 >"$dir/out" 2>"$dir/err" &
  restore_pid=$!
  track_pid "$restore_pid"
  partial=$target.partial-restore.$restore_pid
  for ((i = 0; i < 300; i++)); do
    [[ -e $partial ]] && break
    [[ $(target_sum "$target") != "$before" ]] && break
    kill -0 "$restore_pid" 2>/dev/null || fail "the restore ended before it wrote: $(cat "$dir/err")"
    _nap 0.1
  done
  _nap 1  # about 1 MiB of 8 copied
  kill -0 "$restore_pid" 2>/dev/null || fail "the throttled restore ended within a second: $(cat "$dir/err")"
}
ended_with() {  # ended_with STATUS: waits for the restore
  local status=0
  wait "$restore_pid" || status=$?
  ((status == $1)) || fail "the restore exited $status, expected $1: $(cat "$dir/err")"
}
no_partial_left() {
  compgen -G "$dir/*.partial-restore.*" >/dev/null && fail "$1: a partial file was left: $(ls "$dir")"
  return 0
}
old_unchanged() {
  [[ $(md5sum <"$dir/old.img") == "$old_sum" ]] || fail "$1: the interrupted restore changed the existing target"
}

for signal in TERM HUP; do  # (a background job of a script ignores SIGINT)
  slow_restore "$dir/old.img"
  kill -"$signal" "$restore_pid"
  ended_with $((128 + $(kill -l "$signal")))
  old_unchanged "SIG$signal"
  no_partial_left "SIG$signal"
  slow_restore "$dir/new.img"
  kill -"$signal" "$restore_pid"
  ended_with $((128 + $(kill -l "$signal")))
  [[ ! -e $dir/new.img ]] || fail "SIG$signal: a restore into a new file left the file"
  no_partial_left "SIG$signal, new file"
done
pass "SIGTERM and SIGHUP half-way: the existing target is as it was, a new one absent, no partial file left"

slow_restore "$dir/old.img"
kill -KILL "$restore_pid"
ended_with 137
old_unchanged "SIGKILL"
[[ -f $partial ]] || fail "SIGKILL: no partial file named $partial: $(ls "$dir")"
slow_restore "$dir/new.img"
kill -KILL "$restore_pid"
ended_with 137
[[ ! -e $dir/new.img ]] || fail "SIGKILL: a restore into a new file left the file"
run_cli 0 restore "$chain" --to "$dir/old.img"
run_cli 0 restore "$chain" --to "$dir/new.img"
no_partial_left "SIGKILL, then a restore"
cmp "$dir/old.img" "$dir/at-s1.img" || fail "the restore after the SIGKILL differs from s1"
cmp "$dir/new.img" "$dir/at-s1.img" || fail "the restore into a new file after the SIGKILL differs from s1"
pass "SIGKILL half-way: the target as it was, the partial file clearly named; the next restore removes it"

# qemu-nbd dies half-way: the restore fails, the old file stays, the partial file goes.
head -c 16M /dev/zero | tr '\0' '\167' >"$dir/old.img"
slow_restore "$dir/old.img"
server=$(ps -o pid= --ppid "$restore_pid" | tr -d ' ' || true)
[[ -n $server ]] || fail "no qemu-nbd under the restore"
kill -KILL "$server"
ended_with 4
grep -E "^nbdsnap: restore of point 0001 failed: .*; $dir/old.img is left as it was \\(the partial copy was removed\\)" "$dir/err" >/dev/null ||
  fail "the failed restore's message: $(cat "$dir/err")"
old_unchanged "qemu-nbd killed"
no_partial_left "qemu-nbd killed"
pass "qemu-nbd killed half-way: exit 4, the target named as left as it was, no partial file"

# A block device cannot be renamed: a failure half-way says it holds a partial restore.
if ((EUID == 0)) && loop=$(losetup -f --show "$dir/old.img" 2>/dev/null); then
  cleanup_fn losetup -d "$loop"
  PATH=$dir/wrap:$PATH "$NBDSNAP" restore "$chain" --to "$loop" --connections 1 >"$dir/out" 2>"$dir/err" &
  restore_pid=$!
  track_pid "$restore_pid"
  server=
  for ((i = 0; i < 300; i++)); do
    server=$(ps -o pid= --ppid "$restore_pid" | tr -d ' ' || true)
    [[ -n $server ]] && break
    _nap 0.1
  done
  [[ -n $server ]] || fail "no qemu-nbd under the restore into $loop"
  _nap 2
  kill -KILL "$server"
  ended_with 4
  grep -E "failed: .*; $loop now holds a partial restore \\(its old data partly overwritten\\): do not use it, restore again" \
    "$dir/err" >/dev/null || fail "the failed restore into a block device: $(cat "$dir/err")"
  pass "a block device restore that fails half-way is named as holding a partial restore"
fi
