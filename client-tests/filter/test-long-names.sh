#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-long-names.sh — names of 255 bytes, the longest the docs allow, in the filter: an origin named by
# nbdsnap-default-origin and a snapshot whose default storage file lies in the nbdsnap-storage directory. The
# storage file's name fits (shortened, with a hash), the image serves take-time bytes, destroy removes the
# file, and the origin's CBT resumes over a clean restart.
# Usage: test-long-names.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

long=$(printf 'o%.0s' {1..255})
snap=$(printf 's%.0s' {1..255})
((${#long} == 255 && ${#snap} == 255)) || fail "test names are not 255 bytes"
disk=$dir/disk.img
mkdir "$dir/state" "$dir/diffs"
truncate -s 16M "$disk"
args=(file "$disk" nbdsnap-default-origin="$long" nbdsnap-state-dir="$dir/state" nbdsnap-storage="$dir/diffs:32M")
start_filter --log long "${args[@]}"

qemu-io -f raw -c 'write -P 0x21 0 1M' "$(uri '')" >/dev/null
ctl "{\"command\":\"snapshot-create\",\"name\":\"$snap\",\"origins\":[\"$long\"]}" >/dev/null  # default storage
ctl "{\"command\":\"snapshot-take\",\"name\":\"$snap\"}" >/dev/null
storage=$(ls "$dir/diffs")
[[ $(wc -l <<<"$storage") == 1 && $storage == *.nbdsnap-diff ]] || fail "default storage files: $storage"
((${#storage} <= 251)) || fail "default storage file name of ${#storage} bytes"
qemu-io -f raw -c 'write -P 0x22 0 1M' "$(uri '')" >/dev/null
qemu-io -f raw -r -c 'read -P 0x21 0 1M' "$(uri "$long@$snap")" >/dev/null || fail "image of a 255-byte snapshot"
qemu-io -f raw -r -c 'read -P 0x22 0 1M' "$(uri "$long")" >/dev/null || fail "origin lost a write"
pass "a 255-byte snapshot of a 255-byte origin gets a default storage file and serves take-time bytes"

generation=$(ctl "{\"command\":\"cbt-info\",\"origin\":\"$long\"}" | jq -r .cbt.generation)
ctl "{\"command\":\"snapshot-destroy\",\"name\":\"$snap\"}" >/dev/null
[[ -z $(ls "$dir/diffs") ]] || fail "destroy left the default storage file: $(ls "$dir/diffs")"
stop_server
start_filter --log long2 "${args[@]}"
nbdinfo "$(uri '')" >/dev/null  # the first open attaches the origin
info=$(ctl "{\"command\":\"cbt-info\",\"origin\":\"$long\"}")
[[ $(jq -r .cbt.generation <<<"$info") == "$generation" ]] || fail "generation changed over a clean restart: $info"
pass "the 255-byte origin's CBT resumes over a clean restart"
