#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-commands.sh — every nbdsnap command against a real nbdsnapd: table and --json output, and the exit
# code of each kind of error (usage 2, not found 3, server refusal 1, connection 4), and take hooks.
# Usage: test-cli-commands.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2

truncate -s 64M "$dir/disk.img" "$dir/data.img"
start_nbdsnapd --origin "disk=$dir/disk.img" --origin "data=$dir/data.img"

run_cli 0 version
expect_out '^client: +nbdsnap [0-9]'
expect_out '^server: +nbdsnapd '
expect_out '^protocol: +1$'
run_cli 0 --json version
[[ $(jq_out .protocol) == 1 && $(jq_out .front_end) == nbdsnapd ]] || fail "version --json: $out"
pass "version (table and --json)"

run_cli 0 origins
expect_out '^NAME +SIZE +RO +GENERATION +CHANGE +SNAPSHOT +CLIENTS$'
expect_out '^disk +64\.0 MiB +no +[0-9a-f-]{36} '
expect_out '^data +64\.0 MiB '
run_cli 0 origins --json
[[ $(jq_out '.origins | length') == 2 ]] || fail "origins --json: $out"
[[ $(jq_out '.origins[] | select(.name == "disk") | .size') == 67108864 ]] || fail "origins --json size: $out"
run_cli 0 origin info disk
expect_out '^uri: +nbd'
pass "origins and origin info"

write 0x11 0 1M disk
run_cli 0 cbt info disk
expect_out '^generation: +[^-]'
expect_out '^block size: +64\.0 KiB'
run_cli 0 --json cbt info disk
generation=$(jq_out .cbt.generation)
run_cli 0 cbt map disk
expect_out '^ *OFFSET +LENGTH +END +SIZE$'
expect_out '^ +0 +1048576 +1048576 +1\.0 MiB$'
expect_out '1 range\(s\), 1\.0 MiB changed'
run_cli 0 cbt mark-dirty disk 8M+4K 16M+64K
expect_out 'marked 2 range\(s\)'
run_cli 0 --json cbt map disk
[[ $(jq_out '.ranges | length') == 3 ]] || fail "mark-dirty not in the map: $out"
[[ $(jq_out '.ranges[1].offset') == 8388608 ]] || fail "cbt map --json: $out"
pass "cbt info, map, mark-dirty"

# A list too long for a command line: 40,000 ranges of 512 bytes, 1 KiB apart, from a file (a comment and a blank
# line among them) and again from standard input. They need three requests under the control protocol's 1 MiB
# line; the map then shows one run over the blocks they touch.
{
  echo "# written by a guest agent"
  echo
  for ((i = 0; i < 40000; i++)); do echo "$((i * 1024))+512"; done
} >"$dir/ranges.txt"
run_cli_within 60 0 cbt mark-dirty data --ranges-from "$dir/ranges.txt"
expect_out 'marked 40000 range\(s\), 19\.5 MiB, dirty on data'
run_cli 0 --json cbt map data
[[ $(jq_out '.ranges | length') == 1 && $(jq_out '.ranges[0].offset') == 0 ]] || fail "--ranges-from map: $out"
(($(jq_out '.ranges[0].length') >= 39999 * 1024 + 512)) || fail "--ranges-from: not every range marked: $out"
run_cli_within 60 0 cbt mark-dirty data 63M+4K --ranges-from - <"$dir/ranges.txt"
expect_out 'marked 40001 range\(s\)'
printf '0+4K\n12\n' >"$dir/bad-ranges.txt"
run_cli 2 cbt mark-dirty data --ranges-from "$dir/bad-ranges.txt"
expect_err "bad-ranges.txt:2: range '12' is not OFFSET\\+LENGTH"
run_cli 2 cbt mark-dirty data --ranges-from "$dir/missing.txt"
expect_err 'missing.txt: No such file'
run_cli 2 cbt mark-dirty data
expect_err 'at least one OFFSET\+LENGTH \(or --ranges-from FILE\)'
pass "cbt mark-dirty --ranges-from: 40,000 ranges in three requests, from a file and stdin; bad lines named"

run_cli 0 snapshot create s1 --origin disk --origin data --storage "$dir/s1.diff:32M" --limit 48M
expect_out '^state: +created$'
expect_out '^origins: +disk,data$'
expect_out '^storage limit: +48\.0 MiB$'
run_cli 0 snapshot remove s1 data
run_cli 0 --json snapshot info s1
[[ $(jq_out '.snapshot.origins | join(",")') == disk ]] || fail "remove: $out"
run_cli 0 snapshot add s1 data
run_cli 0 snapshot take s1 --pre-hook "echo pre \$NBDSNAP_SNAPSHOT \$NBDSNAP_HOOK > $dir/hooks" \
  --post-hook "echo post \$NBDSNAP_SNAPSHOT \$NBDSNAP_HOOK >> $dir/hooks"
expect_out '^state: +taken$'
expect_out '^disk +disk@s1 +0 +nbd'  # ORIGIN EXPORT CLIENTS URI
[[ $(cat "$dir/hooks") == $'pre s1 pre\npost s1 post' ]] || fail "hooks: $(cat "$dir/hooks")"
run_cli 0 --json snapshot info s1
[[ $(jq_out '.snapshot.images | length') == 2 ]] || fail "images: $out"
image_uri=$(jq_out '.snapshot.images[] | select(.origin == "disk") | .uri')
qemu-io -f raw -r -c 'read -P 0x11 0 1M' "$image_uri" >/dev/null || fail "image URI from snapshot info unusable"
run_cli 0 snapshot append-storage s1 "$dir/s1.more:8M"
expect_out "s1\.more +0 +8\.0 MiB"
run_cli 0 snapshot list
expect_out '^NAME +STATE +ORIGINS +USED / TOTAL +LIMIT +CHUNKS +TAKEN$'
expect_out '^s1 +taken +disk,data +.* / 40\.0 MiB +48\.0 MiB '
run_cli 0 --json snapshot list
[[ $(jq_out '.snapshots[0].storage_total') == $((40 << 20)) ]] || fail "snapshot list --json: $out"
run_cli 0 origins
expect_out '^disk .* s1 '
pass "snapshot create, remove, add, take with hooks, append-storage, info, list"

run_cli 0 checkpoints disk
expect_out '^NAME +NUMBER +TAKEN +GENERATION$'
expect_out "^s1 +[0-9]+ +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} +$generation\$"
run_cli 0 --json checkpoints disk
[[ $(jq_out '.checkpoints[0].name') == s1 ]] || fail "checkpoints --json: $out"
write 0x22 2M 64K disk
run_cli 0 --json cbt map disk --since s1
[[ $(jq_out '.ranges | map("\(.offset)+\(.length)") | join(" ")') == "2097152+65536" ]] ||
  fail "cbt map --since s1: $out"
pass "checkpoints and cbt map --since"

run_cli 0 events
expect_out '^SEQ +TIME +TYPE +SNAPSHOT +ORIGIN +DETAIL$'
expect_out ' snapshot_taken +s1 '
expect_out ' storage_appended +s1 .*\+8\.0 MiB'
run_cli 0 --json events
last=$(jq_out .last_sequence)
[[ $(jq_out '[.events[] | select(.type == "snapshot_taken")] | length') -ge 1 ]] || fail "events --json: $out"
run_cli 0 events --after "$last" --wait 0.2
[[ $(wc -l <<<"$out") == 1 ]] || fail "events after the last one: $out"
"$NBDSNAP" --json events --follow --after "$last" >"$dir/follow.out" 2>&1 &
follower=$!
track_pid "$follower"
run_cli 0 cbt reset data
for _ in $(seq 300); do grep -q generation_renewed "$dir/follow.out" && break; sleep 0.1; done
grep -q '"type":"generation_renewed"' "$dir/follow.out" || fail "events --follow: $(cat "$dir/follow.out")"
[[ $(jq -r .origin <"$dir/follow.out" | sed -n 1p) == data ]] || fail "events --follow: $(cat "$dir/follow.out")"
kill "$follower"
pass "events (table, --json, --after, --wait, --follow)"

# Errors: one line on stderr, a distinct exit code per kind.
run_cli 2 frobnicate
expect_err '^nbdsnap: unknown command'
run_cli 2 snapshot create
run_cli 2 cbt mark-dirty disk 12
expect_err 'OFFSET\+LENGTH'
run_cli 2 snapshot create s9 --origin disk --limit lots
run_cli 3 snapshot info nosuch
expect_err '^nbdsnap: .*\(not_found\)$'
run_cli 3 cbt info nosuch
run_cli 3 cbt map disk --since nosuch
run_cli 1 snapshot create s2 --origin disk --storage "$dir/s2.diff:8M"
expect_err '^nbdsnap: .*\((busy|already_exists|bad_state)\)$'
run_cli 1 snapshot take s1 --post-hook "touch $dir/post-after-failed-take"
[[ -e $dir/post-after-failed-take ]] || fail "post-hook did not run after a failed take"
run_cli 4 --control "$dir/no.sock" origins
expect_err '^nbdsnap: control socket .*no\.sock: cannot connect'
run_cli 3 backup --image "$(uri nosuch@s1)" --to "$dir/x.img"
[[ $(wc -l <"$dir/err") == 1 ]] || fail "error message is not one line: $err"
pass "error exits: usage 2, not found 3, server 1, connection 4"

run_cli 0 snapshot destroy s1
expect_out '^snapshot s1 destroyed$'
run_cli 0 snapshot create s3 --origin disk --storage "$dir/s3.diff:8M"
run_cli 1 snapshot take s3 --pre-hook 'exit 3' --post-hook "touch $dir/post-ran"
expect_err 'pre-hook failed with status 3: snapshot s3 not taken'
[[ -e $dir/post-ran ]] || fail "post-hook did not run after a failed pre-hook"
run_cli 0 --json snapshot info s3
[[ $(jq_out .snapshot.state) == created ]] || fail "a failed pre-hook still took the snapshot: $out"
run_cli 1 snapshot take s3 --post-hook 'exit 4'
expect_err 'taken but the post-hook failed with status 4'
run_cli 0 --json snapshot info s3
[[ $(jq_out .snapshot.state) == taken ]] || fail "post-hook failure undid the take: $out"
run_cli 0 --json snapshot destroy s3
pass "hooks: a failing pre-hook aborts the take, the post-hook always runs"

run_cli 0 cbt reset disk
expect_out 'new generation'
run_cli 0 --json cbt info disk
[[ $(jq_out .cbt.generation) != "$generation" ]] || fail "cbt reset kept the generation"
run_cli 3 cbt map disk --since s1
expect_err "checkpoint 's1' is gone: CBT history was lost .*; do a full backup \(checkpoint_gone\)$"
truncate -s 1M "$dir/extra.img"
run_cli 0 origin attach extra "$dir/extra.img" --read-only
expect_out '^read only: +yes$'
run_cli 0 origin detach extra
expect_out 'detached'
run_cli 3 origin info extra
pass "cbt reset (an old checkpoint is checkpoint_gone), origin attach and detach"

run_cli 0 snapshot create s4 --origin disk --storage "$dir/s4.diff:8M"
run_cli 0 snapshot take s4
run_cli 0 checkpoint delete disk s4
expect_out '^checkpoint s4 of disk deleted'
run_cli 0 --json checkpoints disk
[[ $(jq_out '.checkpoints | length') == 0 ]] || fail "checkpoint delete: $out"
run_cli 0 --json checkpoints disk --snapshot s4
[[ $(jq_out '.checkpoints[0].name') == s4 ]] || fail "the image lost its checkpoint: $out"
run_cli 0 cbt info disk --snapshot s4
expect_out '^snapshot: +s4$'
expect_out '^checkpoints: +s4=1$'
run_cli 3 cbt info disk --snapshot nosuch
run_cli 3 checkpoint delete disk s4
expect_err "checkpoint 's4' is gone: it was deleted; do a full backup \(checkpoint_gone\)$"
run_cli 3 checkpoint delete disk never
expect_err '\(not_found\)$'
run_cli 2 checkpoint delete disk
run_cli 0 snapshot destroy s4
pass "checkpoint delete; a deleted checkpoint is checkpoint_gone (exit 3), the image keeps it"
