#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tuning-parameters.sh — the filter's engine tuning parameters (core/tuning.h, the same as nbdsnapd's): a bad
# value stops nbdkit at start with a message naming the parameter and its bounds; good values (and the old name
# nbdsnap-tracking-min-shift) reach the engine; --help lists them all.
# Usage: test-tuning-parameters.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

run_nbdkit() {  # nbdkit with the filter in the foreground, for parameters that must stop it
  ${NBDSNAP_NBDKIT_PRELOAD:+env LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} timeout 20 \
    nbdkit -f -U "$dir/refused.sock" --filter="$FILTER" memory size=16M "$@"
}

# expect_refused MESSAGE PARAMETERS...: nbdkit must exit non-zero at once, printing MESSAGE.
expect_refused() {
  local message=$1 status=0
  shift
  run_nbdkit "$@" >"$dir/out" 2>&1 || status=$?
  [[ $status != 0 && $status != 124 ]] || fail "nbdkit with $* exited with $status: $(cat "$dir/out")"
  grep -qF "nbdsnap: $message" "$dir/out" || fail "nbdkit with $*: expected '$message', got: $(cat "$dir/out")"
}

expect_refused "nbdsnap-chunk-min-shift=40 is out of range: it must be 12..30" nbdsnap-chunk-min-shift=40
expect_refused "nbdsnap-copy-io-size=48K is not a power of two: it must be 4K..64M, a power of two" \
  nbdsnap-copy-io-size=48K
expect_refused "nbdsnap-chunk-buffer-budget=65G is out of range: it must be 0..64G" nbdsnap-chunk-buffer-budget=65G
expect_refused "nbdsnap-tracking-block-max-shift=19 is below nbdsnap-tracking-block-min-shift=20" \
  nbdsnap-tracking-min-shift=20 nbdsnap-tracking-block-max-shift=19
expect_refused "nbdsnap-chunk-min-shift=x: expected a whole number 12..30" nbdsnap-chunk-min-shift=x
pass "bad tuning values stop nbdkit with the parameter's name and bounds"

help=$(run_nbdkit --help)
for parameter in chunk-min-shift chunk-max-shift chunk-max-count-shift tracking-block-min-shift \
                 tracking-block-max-shift tracking-block-max-count chunk-buffer-budget low-space-threshold copy-io-size; do
  grep -q "nbdsnap-$parameter=" <<<"$help" || fail "--help does not list nbdsnap-$parameter"
done
pass "--help lists every tuning parameter"

start_filter --log tuned memory size=16M nbdsnap-chunk-min-shift=16 nbdsnap-tracking-min-shift=20 \
  nbdsnap-tracking-block-max-shift=22 nbdsnap-chunk-buffer-budget=8M nbdsnap-copy-io-size=64K
nbdinfo --size "$(uri '')" >/dev/null  # the first open attaches the origin
info=$(ctl '{"command":"origin-info","name":"default"}')
[[ $(jq -r .origin.chunk_size <<<"$info") == 65536 ]] || fail "chunk size: $info"
[[ $(jq -r .origin.tracking_block_size <<<"$info") == 1048576 ]] || fail "tracking block size: $info"
pass "tuning values (and the old name nbdsnap-tracking-min-shift) reach the engine"
