#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-restore-targets.sh — restore and raw backup never write a disk in use nor the chain they read:
# --to the file of a live origin of nbdsnapd, or a snapshot's difference storage, is refused (exit 1) naming
# the file and the holder, and the file is left as it was (not truncated, the image still reads its take);
# --to a file of the chain being restored (itself, a symbolic or a hard link to it) is refused (exit 2) and
# the chain still verifies; a file nobody uses is written; a full file system is named in the error.
# Usage: test-cli-restore-targets.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires qemu-img --version
requires qemu-nbd --version

truncate -s 8M "$dir/a.img" "$dir/b.img"
start_nbdsnapd --origin "a=$dir/a.img" --origin "b=$dir/b.img"
write 0x11 0 1M a
run_cli 0 snapshot create s1 --origin a --storage "$dir/s1.diff:16M"
run_cli 0 snapshot take s1
run_cli 0 backup --image "$(uri a@s1)" --to "$dir/chain" --format qcow2
run_cli 0 snapshot destroy s1
write 0x22 1M 1M a
run_cli 0 snapshot create s2 --origin a --storage "$dir/s2.diff:16M"
run_cli 0 snapshot take s2
run_cli 0 backup --image "$(uri a@s2)" --to "$dir/chain" --format qcow2 --since s1
write 0x33 0 2M a  # the origin now differs from every point
sums() { md5sum "$dir/a.img" "$dir/s2.diff" "$dir/chain"/* | sort; }
before=$(sums)

run_cli 1 restore "$dir/chain" --to "$dir/a.img"
expect_err "restore: --to $dir/a.img is locked by another process \(nbdsnapd, pid $server_pid\).*origin"
run_cli 1 restore "$dir/chain" --point 0001 --to "$dir/s2.diff"
expect_err "s2.diff is locked by another process \(nbdsnapd, pid $server_pid\)"
run_cli 1 --json backup --image "$(uri a@s2)" --to "$dir/b.img"
[[ $(jq_out .error.code) == busy ]] || fail "backup into an origin's file: $out"
[[ $(sums) == "$before" ]] || fail "a refused target changed: $(diff <(echo "$before") <(sums))"
qemu-io -r -f raw -c "read -P 0x22 1M 1M" "$(uri a@s2)" >/dev/null || fail "a@s2 no longer reads its take"
pass "an origin's file and a difference storage file are refused as targets, naming nbdsnapd, and unchanged"

ln -s 0001.qcow2 "$dir/chain/link.qcow2"
ln "$dir/chain/0002.qcow2" "$dir/hard.qcow2"
for target in "$dir/chain/0001.qcow2" "$dir/chain/0002.qcow2" "$dir/chain/link.qcow2" "$dir/hard.qcow2" \
  "$dir/chain/nbdsnap-chain.json"; do
  run_cli 2 restore "$dir/chain" --to "$target"
  expect_err "a file of the backup chain being read"
done
rm "$dir/chain/link.qcow2" "$dir/hard.qcow2"
[[ $(sums) == "$before" ]] || fail "a refused chain file changed"
run_cli 0 backup verify "$dir/chain"
pass "a file of the chain being read (by name, symbolic or hard link, the manifest) is refused"

run_cli 0 restore "$dir/chain" --to "$dir/restored.img"
qemu-io -f raw -c "read -P 0x11 0 1M" -c "read -P 0x22 1M 1M" "$dir/restored.img" >/dev/null ||
  fail "the restored file does not hold point 0002"
pass "a file nobody uses is restored"

# A target on a full file system: the error says restore and names the file (as root, on a 1 MiB tmpfs).
if ((EUID == 0)) && mkdir "$dir/small" && mount -t tmpfs -o size=1m tmpfs "$dir/small" 2>/dev/null; then
  _mounts+=("$dir/small")
  run_cli 4 restore "$dir/chain" --to "$dir/small/disk.img"
  expect_err "^nbdsnap: restore of point 0002 failed: writing $dir/small/disk.img at offset [0-9]+ .*No space left"
  pass "a restore into a full file system names the restore and its target"
fi

# An NBD export whose server refuses a flush it advertises: the restore fails before its first write, says the
# export is unchanged, and it is. nbdkit 1.32 under -o refuses flush, FUA, trim and write zeroes alike (a later
# nbdkit may serve them: then the restore must be whole); an eval plugin refuses every flush.
requires nbdkit --version
restore_to_nbdkit() {  # NAME NBDKIT-ARGS...: restores point 0002 into what nbdkit ARGS serves ($dir/NAME.img)
  local name=$1
  shift
  truncate -s 8M "$dir/$name.img"
  qemu-io -f raw -c "write -P 0x44 0 8M" "$dir/$name.img" >/dev/null
  nbdkit -U "$dir/$name.sock" -P "$dir/$name.pid" "$@" </dev/null >"$dir/nbdkit-$name.log" 2>&1 ||
    fail "nbdkit $*: $(cat "$dir/nbdkit-$name.log")"
  track_pid "$(cat "$dir/$name.pid")"  # written once nbdkit listens, before it returns
  status=0
  timeout -k 2 60 "$NBDSNAP" restore "$dir/chain" --to "nbd+unix:///?socket=$dir/$name.sock" >"$dir/out" \
    2>"$dir/err" || status=$?
  out=$(cat "$dir/out")
  err=$(cat "$dir/err")
}
file=$dir/refused.img
restore_to_nbdkit refused eval get_size='echo 8388608' can_write='exit 0' can_flush='exit 0' \
  pread="dd if=$file skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none" \
  pwrite="dd of=$file seek=\$4 oflag=seek_bytes conv=notrunc status=none" \
  flush='echo "EINVAL this server refuses flush" >&2; exit 1'
((status == 4)) || fail "a restore into an export that refuses flush exited $status: $err"
expect_err "^nbdsnap: restore of point 0002 failed before its first write: .*flush.*; nbd\+unix:.* is unchanged"
qemu-io -f raw -c "read -P 0x44 0 8M" "$dir/refused.img" >/dev/null || fail "the refused export was written"
pass "an export that refuses the flush it advertises fails the restore before its first write, unchanged"

restore_to_nbdkit oldstyle -o file "$dir/oldstyle.img"
if ((status == 0)); then
  qemu-io -f raw -c "read -P 0x11 0 1M" -c "read -P 0x22 1M 1M" -c "read -P 0 2M 6M" "$dir/oldstyle.img" \
    >/dev/null || fail "the restore into nbdkit -o does not hold point 0002"
  pass "a restore into nbdkit -o (which serves what it advertises) holds the point"
else
  ((status == 4)) || fail "a restore into nbdkit -o exited $status: $err"
  expect_err "failed before its first write: .*is unchanged"
  qemu-io -f raw -c "read -P 0x44 0 8M" "$dir/oldstyle.img" >/dev/null || fail "the nbdkit -o export was written"
  pass "nbdkit -o, which refuses the flush it advertises: the restore fails before its first write, unchanged"
fi
