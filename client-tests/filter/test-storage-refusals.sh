#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-storage-refusals.sh — a plugin's own file is never difference storage. With `file dir=D`, storage that
# is a file in D (by path, hard link, symbolic link or relative path), or a new file in D, is refused through
# the control socket with a message naming the file and the reason, and the file is left as it was; so is the
# file of `file FILE` and `file file=FILE`. nbdsnap-storage naming a served file, or a directory that does not
# exist, stops nbdkit at start with a message naming the parameter.
# Usage: test-storage-refusals.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

mkdir "$dir/D" "$dir/other"
truncate -s 8M "$dir/D/d"
truncate -s 1M "$dir/D/e"
qemu-io -f raw -c 'write -P 0xee 0 1M' "$dir/D/e" >/dev/null
ln "$dir/D/d" "$dir/other/hard"
ln -s "$dir/D/d" "$dir/other/soft"
cd "$dir"  # nbdkit -f stays here: relative storage paths are taken from this directory

# refuse COMMAND-JSON CODE TEXT: the request fails with CODE and a message holding TEXT.
refuse() {
  local reply
  reply=$(ctl_error "$1") || fail "$1 was accepted: $reply"
  [[ $(jq -r .error.code <<<"$reply") == "$2" ]] || fail "$1 answered $reply"
  grep -qF -- "$3" <<<"$(jq -r .error.message <<<"$reply")" || fail "$1 answered $reply; expected: $3"
}
create() { echo '{"command":"snapshot-create","name":"s","origins":["'"$1"'"],"storage":[{"path":"'"$2"'","size":'"$3"'}]}'; }
append() { echo '{"command":"snapshot-append-storage","name":"s","path":"'"$1"'","size":'"$2"'}'; }

start_filter --log dir file dir="$dir/D" nbdsnap-chunk-min-shift=16
qemu-io -f raw -c 'write -P 0xd1 0 8M' "$(uri d)" >/dev/null
served="which the plugin serves as export"
refuse "$(create d "$dir/D/e" 0)" already_exists "difference storage $dir/D/e is $dir/D/e, $served 'e' (dir=$dir/D)"
refuse "$(create d "$dir/D/e" 4194304)" already_exists "difference storage $dir/D/e is $dir/D/e, $served 'e'"
refuse "$(create d "$dir/D/d" 0)" already_exists "difference storage $dir/D/d is $dir/D/d, $served 'd'"
refuse "$(create d "$dir/other/hard" 0)" already_exists "difference storage $dir/other/hard is $dir/D/d, $served 'd'"
refuse "$(create d "$dir/other/soft" 0)" already_exists "difference storage $dir/other/soft is $dir/D/d, $served 'd'"
refuse "$(create d D/d 0)" already_exists "difference storage D/d is $dir/D/d, $served 'd'"
refuse "$(create d "$dir/D/new" 1048576)" invalid_argument \
  "difference storage $dir/D/new lies in $dir/D, which the plugin serves (dir=$dir/D): every file there is an export"
[[ ! -e $dir/D/new ]] || fail "refused storage $dir/D/new was created"
[[ $(stat -c %s "$dir/D/e") == 1048576 ]] || fail "D/e was resized"
qemu-io -f raw -r -c 'read -P 0xee 0 1M' "$dir/D/e" >/dev/null || fail "D/e was overwritten"
ctl "$(create d "$dir/s.diff" 16777216)" >/dev/null
refuse "$(append "$dir/D/e" 0)" already_exists "difference storage $dir/D/e is $dir/D/e, $served 'e'"
refuse "$(append D/more 1048576)" invalid_argument "difference storage D/more lies in $dir/D"
ctl '{"command":"snapshot-take","name":"s"}' >/dev/null
qemu-io -f raw -c 'write -P 0xd2 0 1M' "$(uri d)" >/dev/null
qemu-io -f raw -r -c 'read -P 0xd1 0 8M' "$(uri d@s)" >/dev/null || fail "image d@s"
qemu-io -f raw -r -c 'read -P 0xee 0 1M' "$dir/D/e" >/dev/null || fail "D/e was overwritten"
pass "dir=D: files in D (path, hard link, symlink, relative path) and new files in D are never storage"
stop_server

for form in bare key; do
  if [[ $form == bare ]]; then start_filter --log "file-$form" file "$dir/other/hard"
  else start_filter --log "file-$form" file file="$dir/other/hard"; fi
  nbdinfo "$(uri '')" >/dev/null
  refuse "$(create default "$dir/D/d" 0)" already_exists \
    "difference storage $dir/D/d is $dir/other/hard, which the plugin serves (file=$dir/other/hard)"
  refuse "$(create default "$dir/other/soft" 0)" already_exists "which the plugin serves (file=$dir/other/hard)"
  ctl "$(create default "$dir/D/e" 0)" >/dev/null  # not served by this plugin
  ctl '{"command":"snapshot-destroy","name":"s"}' >/dev/null
  stop_server
done
pass "file FILE and file=FILE: the plugin's file is never storage"

# fails_to_start LABEL TEXT NBDKIT-ARGS...: nbdkit exits with an error at start and says TEXT.
fails_to_start() {
  local label=$1 text=$2 log=$dir/nbdkit-$1.log status=0
  shift 2
  timeout 60 ${NBDSNAP_NBDKIT_PRELOAD:+env LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f -U "$dir/$label.sock" \
    --filter="$FILTER" "$@" </dev/null >"$log" 2>&1 || status=$?
  [[ $status -ne 0 && $status -ne 124 ]] || fail "$label: nbdkit started (status $status)"
  grep -qF -- "$text" "$log" || fail "$label: nbdkit said $(cat "$log")"
  rm -f "$log"
}
fails_to_start missing-dir "nbdsnap-storage=$dir/dif does not exist: mkdir $dir/dif for one file per snapshot" \
  memory 16M nbdsnap-storage="$dir/dif:64M"
fails_to_start missing-file "or create the file first (e.g. fallocate -l SIZE $dir/one.diff)" \
  memory 16M nbdsnap-storage="$dir/one.diff"
fails_to_start served-dir "nbdsnap-storage: difference storage $dir/D is the directory the plugin serves" \
  file dir="$dir/D" nbdsnap-storage="$dir/D:64M"
fails_to_start served-file "nbdsnap-storage: difference storage $dir/other/soft is $dir/D/d, which the plugin serves" \
  file "$dir/D/d" nbdsnap-storage="$dir/other/soft"
pass "nbdsnap-storage that does not exist or that the plugin serves stops nbdkit at start"
