#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-storage-sparse.sh — the filter's default difference storage (nbdsnap-storage=DIR:SIZE) is allocated in
# full at snapshot-create, and created sparse with nbdsnap-storage-sparse=true (the parameter once reached the
# storage spec but not the create request, so the file was allocated anyway).
# Usage: test-storage-sparse.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

truncate -s 16M "$dir/disk.raw"
create() { ctl '{"command":"snapshot-create","name":"'"$1"'","origins":["default"]}' >/dev/null; }
# allocated_kib NAME: KiB allocated to the one storage file snapshot NAME got in $dir/st.
allocated_kib() {
  local file
  file=$(ctl '{"command":"snapshot-info","name":"'"$1"'"}' | jq -r '.snapshot.storage[0].path')
  [[ -f $file ]] || fail "snapshot $1 has no storage file: $file"
  du -k "$file" | cut -f1
}

mkdir "$dir/st"
start_filter --log sparse file "$dir/disk.raw" nbdsnap-storage="$dir/st:32M" nbdsnap-storage-sparse=true \
  nbdsnap-state-dir="$dir/state"
create s1
kib=$(allocated_kib s1)
((kib < 1024)) || fail "nbdsnap-storage-sparse=true: the storage file has $kib KiB allocated"
ctl '{"command":"snapshot-destroy","name":"s1"}' >/dev/null
stop_server
pass "nbdsnap-storage-sparse=true creates the default storage sparse ($kib KiB allocated)"

start_filter --log full file "$dir/disk.raw" nbdsnap-storage="$dir/st:32M" nbdsnap-state-dir="$dir/state"
create s2
kib=$(allocated_kib s2)
((kib >= 32768)) || fail "default storage: only $kib KiB of 32 MiB allocated"
ctl '{"command":"snapshot-destroy","name":"s2"}' >/dev/null
stop_server
pass "without it the default storage is allocated in full ($kib KiB)"
