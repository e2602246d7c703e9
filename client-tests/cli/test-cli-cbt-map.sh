#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-cbt-map.sh — `nbdsnap cbt map` against nbdsnapd after writes made through NBD: the raw change numbers
# (--raw) of the live map and of a snapshot's frozen map, ranges and runs read in small pages (--page-size) equal
# to the unpaged answer, --offset/--length windows (unaligned ones widened to whole blocks for --raw), and the
# table output.
# Usage: test-cli-cbt-map.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

K=65536  # the tracking block of a 16 MiB origin
disk=$dir/disk.img
truncate -s 16M "$disk"
start_nbdsnapd --origin "disk=$disk"

# Change number 1: blocks 1, 3-4, 10, 200-201 (the last write is unaligned and crosses into block 201).
qemu-io -f raw -c "write -P 1 $((1 * K)) 4K" -c "write -P 1 $((3 * K)) $((2 * K))" -c "write -P 1 $((10 * K)) 1" \
  -c "write -P 1 $((201 * K - 512)) 1024" "$(uri disk)" >/dev/null
run_cli 0 snapshot create s1 --origin disk --storage "$dir/s1.diff:16M"
run_cli 0 snapshot take s1
# Change number 2: blocks 4 and 50, after the take of s1.
qemu-io -f raw -c "write -P 2 $((4 * K)) 512" -c "write -P 2 $((50 * K)) $K" "$(uri disk)" >/dev/null

runs() { jq_out '.runs | map("\(.[0])x\(.[1])") | join(" ")'; }
ranges() { jq_out '.ranges | map("\(.offset)+\(.length)") | join(" ")'; }

run_cli 0 --json cbt map disk --raw
live="0x1 1x1 0x1 1x1 2x1 0x5 1x1 0x39 2x1 0x149 1x2 0x54"
[[ $(runs) == "$live" ]] || fail "live raw map: $(runs)"
[[ $(jq_out .offset) == 0 && $(jq_out .length) == $((16 << 20)) && $(jq_out .more) == false ]] ||
  fail "live raw map span: $out"
[[ $(jq_out .change_number) == 2 && $(jq_out .block_size) == $K ]] || fail "live raw map header: $out"
[[ $(jq_out '.checkpoints | map("\(.name)=\(.number)") | join(",")') == s1=1 ]] || fail "checkpoints: $out"
run_cli 0 --json cbt map disk --raw --page-size 2
[[ $(runs) == "$live" ]] || fail "live raw map in pages of 2 runs: $(runs)"
[[ $(jq_out .length) == $((16 << 20)) && $(jq_out .next_offset) == $((16 << 20)) ]] || fail "paged span: $out"
pass "raw change numbers of the live map, whole and in pages of 2 runs"

run_cli 0 --json cbt map disk --raw --snapshot s1 --page-size 3
[[ $(runs) == "0x1 1x1 0x1 1x2 0x5 1x1 0x189 1x2 0x54" ]] || fail "frozen raw map of s1: $(runs)"
[[ $(jq_out .snapshot) == s1 && $(jq_out .change_number) == 1 ]] || fail "frozen raw map header: $out"
pass "raw change numbers of the map frozen at s1's take do not have the later writes"

# An unaligned window widens to the blocks it touches: 200K..300K is in blocks 3 and 4.
run_cli 0 --json cbt map disk --raw --offset 200K --length 100K
[[ $(runs) == "1x1 2x1" && $(jq_out .offset) == $((3 * K)) && $(jq_out .length) == $((2 * K)) ]] ||
  fail "unaligned raw window: $out"
run_cli 0 --json cbt map disk --raw --offset 15M --page-size 1
[[ $(runs) == "0x16" && $(jq_out .offset) == $((15 << 20)) ]] || fail "raw window to the end: $out"
run_cli 1 cbt map disk --raw --offset 17M
expect_err 'beyond the end of origin .*\(out_of_range\)'
pass "raw windows: unaligned ones widen to whole blocks; past the end is out_of_range"

run_cli 0 --json cbt map disk
all="$K+$K $((3 * K))+$((2 * K)) $((10 * K))+$K $((50 * K))+$K $((200 * K))+$((2 * K))"
[[ $(ranges) == "$all" ]] || fail "changed ranges: $(ranges)"
run_cli 0 --json cbt map disk --page-size 1
[[ $(ranges) == "$all" && $(jq_out .more) == false ]] || fail "changed ranges one per page: $(ranges)"
run_cli 0 --json cbt map disk --since s1 --page-size 1
[[ $(ranges) == "$((4 * K))+$K $((50 * K))+$K" ]] || fail "changed since s1: $(ranges)"
run_cli 0 --json cbt map disk --since s1 --snapshot s1
[[ $(ranges) == "" ]] || fail "nothing changed between s1 and its own take: $(ranges)"
# A window clips ranges at any byte; pages of one range keep the window's end (10 * K + 10000, in block 10).
run_cli 0 --json cbt map disk --offset 100000 --length $((10 * K + 10000 - 100000)) --page-size 1
[[ $(ranges) == "100000+$((2 * K - 100000)) $((3 * K))+$((2 * K)) $((10 * K))+10000" ]] ||
  fail "clipped window: $(ranges)"
pass "changed ranges in pages of 1 equal the whole answer; windows clip at any byte"

run_cli 0 cbt map disk --raw --length 5M
expect_out '^ *OFFSET +LENGTH +BLOCKS +NUMBER$'
expect_out "^ +$((4 * K)) +$K +1 +2\$"
expect_out '^80 block\(s\) of 64\.0 KiB in 10 run\(s\), live map \(generation .*, change number 2\)$'
expect_out 'N: changed after every checkpoint numbered below N \(s1=1\)'
run_cli 2 cbt map disk --raw --since s1
run_cli 2 cbt map disk --page-size 0
run_cli 3 cbt map disk --raw --snapshot nosuch
pass "raw map table, and the usage errors"
run_cli 0 snapshot destroy s1
