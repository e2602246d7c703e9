#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-config-file-errors.sh — nbdsnapd's option errors people act on (issue 20, item 3): every numeric option
# out of bounds stops nbdsnapd with exit status 2 and a message naming the option, the value and the bounds;
# from the configuration file the same message follows FILE:LINE; lines that are not options name their line.
# --state-dir is created (mode 0700) in an existing parent and reported missing, not created, without one.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 16M "$dir/disk.raw"

# expect_refused MESSAGE ARGS...: nbdsnapd with this test's origin must refuse to start (functions.sh).
expect_refused() { local message=$1; shift; expect_nbdsnapd_refused "$message" --origin "disk=$dir/disk.raw" "$@"; }

# OPTION|VALUE|MESSAGE: every numeric option of nbdsnapd, one bad value each.
cases=(
  "threads|0|--threads 0 is out of range: it must be 1..1024"
  "max-in-flight|4097|--max-in-flight 4097 is out of range: it must be 1..4096"
  "max-connections|-1|--max-connections -1: expected a whole number 0..1000000"
  "handshake-timeout|86401|--handshake-timeout 86401 is out of range: it must be 0..86400"
  "chunk-min-shift|40|--chunk-min-shift 40 is out of range: it must be 12..30"
  "chunk-max-shift|11|--chunk-max-shift 11 is out of range: it must be 12..30"
  "chunk-max-count-shift|64|--chunk-max-count-shift 64 is out of range: it must be 1..63"
  "tracking-block-min-shift|8|--tracking-block-min-shift 8 is out of range: it must be 9..30"
  "tracking-block-max-shift|31|--tracking-block-max-shift 31 is out of range: it must be 9..30"
  "tracking-block-max-count|0|--tracking-block-max-count 0 is out of range: it must be 1..4294967296"
  "chunk-buffer-budget|65G|--chunk-buffer-budget 65G is out of range: it must be 0..64G"
  "low-space-threshold|2P|--low-space-threshold 2P is out of range: it must be 0..1P"
  "copy-io-size|48K|--copy-io-size 48K is not a power of two: it must be 4K..64M, a power of two"
  "checkpoints-kept|129|--checkpoints-kept 129 is out of range: it must be 2..128"
)
for case in "${cases[@]}"; do
  IFS='|' read -r option value message <<<"$case"
  expect_refused "$message" "--$option" "$value"
  printf '# nbdsnapd configuration\nlog-level = info\n\n%s = %s\n' "$option" "$value" >"$dir/nbdsnapd.conf"
  expect_refused "$dir/nbdsnapd.conf:4: $message" --config "$dir/nbdsnapd.conf"
done
echo "ok: every numeric option names itself, its value and its bounds, from the file with FILE:LINE"

printf 'threads = 2\nchunk-min-shift = 20\nchunk-max-shift = 18\n' >"$dir/nbdsnapd.conf"
expect_refused "$dir/nbdsnapd.conf:3: --chunk-max-shift 18 is below --chunk-min-shift 20: raise --chunk-max-shift to at least 20 or lower --chunk-min-shift" \
  --config "$dir/nbdsnapd.conf"
printf 'threads = 2\nthreds = 4\n' >"$dir/nbdsnapd.conf"
expect_refused "$dir/nbdsnapd.conf:2: unknown option 'threds' (keys are the long options of nbdsnapd --help, without --)" \
  --config "$dir/nbdsnapd.conf"
printf 'origin = a=%s\nlog-level = chatty\n' "$dir/disk.raw" >"$dir/nbdsnapd.conf"
expect_refused "$dir/nbdsnapd.conf:2: --log-level chatty: must be error, warning, info or debug" \
  --config "$dir/nbdsnapd.conf"
echo "ok: the file's other errors name their line"

# --state-dir: created in an existing parent, reported missing otherwise (exit 1, nothing created).
status=0
timeout 20 "$NBDSNAPD" --listen "unix:$sock" --control "$ctl" --state-dir "$dir/no/state" \
  --origin "disk=$dir/disk.raw" >"$dir/out" 2>&1 || status=$?
[[ $status == 1 ]] || fail "a state dir without parent: exit $status: $(cat "$dir/out")"
grep -qF -- "--state-dir $dir/no/state does not exist, and neither does its parent directory $dir/no" "$dir/out" ||
  fail "a state dir without parent: $(cat "$dir/out")"
[[ ! -e $dir/no ]] || fail "a state dir without parent: something was created"
printf 'threads = 0\n' >"$dir/nbdsnapd.conf"  # start_nbdsnapd gives --threads 4: the command line wins
# --state-dir given here: start_nbdsnapd would otherwise create its default $state itself (mkdir, not 0700).
start_nbdsnapd --state-dir "$dir/new-state" --config "$dir/nbdsnapd.conf" --origin "disk=$dir/disk.raw"
[[ $(stat -c %a "$dir/new-state") == 700 ]] || fail "the new state dir's mode is $(stat -c %a "$dir/new-state")"
stop_server
echo "ok: --state-dir is created (0700) in an existing parent and reported missing without one; the command line wins over the file"
