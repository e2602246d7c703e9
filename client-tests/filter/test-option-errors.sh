#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-option-errors.sh — the filter's and nbdsnapd's option errors say the same words for the same option
# (issue 20, item 3): for every tuning option (core/tuning.h) a bad value stops nbdkit and nbdsnapd, each
# printing the option as it spells it (nbdsnap-NAME=VALUE, --NAME VALUE), the value and the bounds, the rest of
# the message identical. nbdsnap-state-dir is created (mode 0700) in an existing parent and reported missing,
# not "not a directory", without one.
# Usage: test-option-errors.sh FILTER.so NBDSNAPD
FILTER=$1
NBDSNAPD=$2
source "$(dirname "$0")/../functions.sh"

# The message a front end printed for a refused start: the line holding "nbdsnap: " or "nbdsnapd: ".
filter_message() {  # PARAMETERS...
  local status=0
  ${NBDSNAP_NBDKIT_PRELOAD:+env LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} timeout 20 \
    nbdkit -f -U "$dir/refused.sock" --filter="$FILTER" memory size=16M "$@" >"$dir/out" 2>&1 || status=$?
  [[ $status != 0 && $status != 124 ]] || fail "nbdkit with $* exited with $status: $(cat "$dir/out")"
  grep -o 'nbdsnap: .*' "$dir/out" | sed -n 1p | sed 's/^nbdsnap: //'
}
nbdsnapd_message() {  # OPTIONS...
  local status=0
  timeout 20 "$NBDSNAPD" --listen "unix:$dir/refused.sock" --control none --state-dir "$dir/state" "$@" \
    >"$dir/out" 2>&1 || status=$?
  [[ $status == 2 ]] || fail "nbdsnapd $* exited with $status, not 2: $(cat "$dir/out")"
  sed -n 's/^nbdsnapd: //p' "$dir/out" | sed -n 1p
}

mkdir "$dir/state"
# NAME|BAD VALUE|MESSAGE AFTER THE OPTION AND VALUE
cases=(
  "chunk-min-shift|40| is out of range: it must be 12..30"
  "chunk-min-shift|x|: expected a whole number 12..30"
  "chunk-max-shift|31| is out of range: it must be 12..30"
  "chunk-max-count-shift|0| is out of range: it must be 1..63"
  "tracking-block-min-shift|99999999999999999999999| is too large: it must be 9..30"
  "tracking-block-max-shift|8| is out of range: it must be 9..30"
  "tracking-block-max-count|4294967297| is out of range: it must be 1..4294967296"
  "chunk-buffer-budget|65G| is out of range: it must be 0..64G"
  "low-space-threshold|2P| is out of range: it must be 0..1P"
  "copy-io-size|128M| is out of range: it must be 4K..64M, a power of two"
  "checkpoints-kept|1| is out of range: it must be 2..128"
)
for case in "${cases[@]}"; do
  IFS='|' read -r name value rest <<<"$case"
  from_filter=$(filter_message "nbdsnap-$name=$value")
  from_nbdsnapd=$(nbdsnapd_message "--$name" "$value")
  [[ $from_filter == "nbdsnap-$name=$value$rest" ]] || fail "filter nbdsnap-$name=$value: $from_filter"
  [[ $from_nbdsnapd == "--$name $value$rest" ]] || fail "nbdsnapd --$name $value: $from_nbdsnapd"
  pass "$name=$value: '$from_filter' / '$from_nbdsnapd'"
done

# nbdsnap-state-dir: a missing directory without a parent is reported missing, nothing is created.
message=$(filter_message nbdsnap-state-dir="$dir/no/state")
[[ $message == "nbdsnap-state-dir=$dir/no/state does not exist, and neither does its parent directory $dir/no: "* ]] ||
  fail "nbdsnap-state-dir without a parent: $message"
[[ ! -e $dir/no ]] || fail "nbdsnap-state-dir without a parent: something was created"
touch "$dir/file"
message=$(filter_message nbdsnap-state-dir="$dir/file")
[[ $message == "nbdsnap-state-dir=$dir/file is not a directory: "* ]] || fail "nbdsnap-state-dir a file: $message"
start_filter --log fresh memory size=16M nbdsnap-state-dir="$dir/fresh-state"
[[ $(stat -c %a "$dir/fresh-state") == 700 ]] || fail "the new state dir's mode is $(stat -c %a "$dir/fresh-state")"
nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null  # the first open attaches the origin
stop_server
ls "$dir/fresh-state"/*.cbt >/dev/null || fail "no CBT state in the created state dir"
pass "nbdsnap-state-dir is created (0700) in an existing parent and reported missing without one"
