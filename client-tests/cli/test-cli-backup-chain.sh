#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-backup-chain.sh — qcow2 backup chains against nbdsnapd: ten points with random writes between them,
# every point restored and equal (qemu-img compare) to a copy of the disk made at its take; files and
# directory private whatever the umask; --progress=FD lines; prune --keep keeps every remaining point exact;
# restore into a live origin of a second nbdsnapd (zeroes included, its CBT sees the writes); a damaged middle
# file is named by verify (and the points built on it), and the points before it still restore.
# Usage: test-cli-backup-chain.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

disk=$dir/disk.img
chain=$dir/chain
truncate -s 32M "$disk"
start_nbdsnapd --origin "disk=$disk"

# random_writes: a few writes of random bytes patterns at random places, and one range zeroed.
random_writes() {
  local commands=() i
  for i in 1 2 3 4 5 6; do
    commands+=(-c "write -P $((RANDOM % 255 + 1)) $(((RANDOM % 480) * 65536)) $(((RANDOM % 8 + 1) * 65536))")
  done
  commands+=(-c "write -z $(((RANDOM % 480) * 65536)) 262144")
  qemu-io -f raw "${commands[@]}" "$(uri disk)" >/dev/null
}
# take NAME: snapshot of disk with the origin quiet, and a copy of the disk at that instant.
take() {
  run_cli 0 snapshot create "$1" --origin disk --storage "$dir/$1.diff:32M"
  cp --sparse=always "$disk" "$dir/ref-$1.img"
  run_cli 0 snapshot take "$1"
}
same_as_reference() {  # FILE NAME
  qemu-img compare -q -f raw -F raw "$1" "$dir/ref-$2.img" || fail "$1 differs from the disk at the take of $2"
}

umask 000  # the chain holds disk contents: private whatever the umask
previous=
for n in $(seq 10); do
  random_writes
  take "s$n"
  exec 3>"$dir/progress"
  run_cli 0 --json backup --image "$(uri "disk@s$n")" --to "$chain" --format qcow2 ${previous:+--since "$previous"} \
    --progress=3
  exec 3>&-
  kind=$([[ -n $previous ]] && echo incremental || echo full)
  [[ $(jq_out .kind) == "$kind" && $(jq_out .point) == $(printf %04d "$n") ]] || fail "point $n: $out / $err"
  run_cli 0 snapshot destroy "s$n"
  previous=s$n
done
umask 022
grep -Evq '^[0-9]+/100$' "$dir/progress" && fail "--progress lines: $(cat "$dir/progress")"
[[ $(tail -n 1 "$dir/progress") == 100/100 ]] || fail "--progress did not end at 100/100: $(cat "$dir/progress")"
[[ $(stat -c %a "$chain") == 700 ]] || fail "chain directory mode $(stat -c %a "$chain")"
for file in "$chain"/*.qcow2 "$chain/nbdsnap-chain.json"; do
  [[ $(stat -c %a "$file") == 600 ]] || fail "$file has mode $(stat -c %a "$file")"
done
[[ $(qemu-img info --output=json "$chain/0005.qcow2" | jq -r '."backing-filename"') == 0004.qcow2 ]] ||
  fail "0005.qcow2 is not an overlay of 0004.qcow2"
pass "10 points written (a full one and 9 qcow2 overlays), mode 0600 under umask 000, --progress=FD lines"

run_cli 0 backup list "$chain"
expect_out '^POINT +CHECKPOINT +TIME +BYTES +SHARE +BASE +STATE$'
expect_out '^0001 +s1 .* -  +complete$'
expect_out '^0010 +s10 .* 0009 +complete$'
for n in $(seq 10); do
  run_cli 0 restore "$chain" --point "s$n" --to "$dir/restored.img"
  same_as_reference "$dir/restored.img" "s$n"
done
pass "every point restored equals the disk at its take"

run_cli 0 --json backup prune "$chain" --keep 4
[[ $(jq_out .merged_into) == 0007 && $(jq_out '.removed | length') == 6 ]] || fail "prune: $out"
[[ $(ls "$chain"/*.qcow2 | wc -l) == 4 ]] || fail "files after prune: $(ls "$chain")"
[[ $(qemu-img info --output=json "$chain/0007.qcow2" | jq -r '."backing-filename" // ""') == "" ]] ||
  fail "0007.qcow2 still has a backing file"
for n in 7 8 9 10; do
  run_cli 0 restore "$chain" --point "s$n" --to "$dir/restored.img"
  same_as_reference "$dir/restored.img" "s$n"
done
run_cli 0 backup verify "$chain"
run_cli 3 restore "$chain" --point s3 --to "$dir/restored.img"
pass "prune --keep 4 merged the oldest kept point; every kept point is unchanged and verifies"

# Restore into a live origin of a second nbdsnapd: its old data must go (zeroes written too), through its
# tracker (its CBT marks what the restore wrote).
second=$dir/second
mkdir -p "$second/state"
truncate -s 32M "$dir/disk2.img"
setsid "$NBDSNAPD" --listen "unix:$second/nbd.sock" --control "$second/control.sock" --state-dir "$second/state" \
  --origin "disk2=$dir/disk2.img" </dev/null >"$dir/server-second.log" 2>&1 &
track_pid $!
wait_for_path "$second/control.sock" $!
qemu-io -f raw -c "write -P 0xee 0 32M" "nbd+unix:///disk2?socket=$second/nbd.sock" >/dev/null
run_cli 0 --json restore "$chain" --point s9 --to "nbd+unix:///disk2?socket=$second/nbd.sock"
(($(jq_out .bytes_zeroed) > 0)) || fail "restore into an origin wrote no zeroes: $out"
same_as_reference "nbd+unix:///disk2?socket=$second/nbd.sock" s9  # the file is locked by nbdsnapd
run_cli 0 --control "$second/control.sock" --json cbt map disk2
(($(jq_out '.ranges | length') > 0)) || fail "the restore's writes are not in the origin's CBT: $out"
run_cli 2 restore "$chain" --point s9 --to "nbd+unix:///disk2?socket=$second/control.sock"
expect_err "this is an nbdsnap control socket, not an NBD socket: give --to a URI"
run_cli 2 --control "$second/control.sock" backup --image "nbd+unix:///disk2?socket=$second/nbd.sock" \
  --format qcow2 --to "$chain"
expect_err "holds backups of origin 'disk', not 'disk2'"
pass "restore into a live origin of a second nbdsnapd equals the point, zeroes included; its CBT saw it"

# A damaged middle file: verify names it and the points built on it; the points before still restore.
size=$(stat -c %s "$chain/0008.qcow2")
dd if=/dev/urandom of="$chain/0008.qcow2" bs=4096 count=4 seek=$((size / 4096 / 2)) conv=notrunc status=none
run_cli 1 backup verify "$chain"
expect_out '^0007 .* ok$'
expect_out '^0008 .*0008.qcow2 is damaged: its XXH3-128 is'
expect_out '^0009 .* built on point 0008, which is damaged$'
expect_err '3 of 4 point\(s\) damaged or unusable: 0008, 0009, 0010'
run_cli 0 backup verify "$chain" --point s7
run_cli 0 restore "$chain" --point s7 --to "$dir/restored.img"
same_as_reference "$dir/restored.img" s7
pass "verify names the damaged file 0008 and the points built on it; point 0007 still restores exactly"
