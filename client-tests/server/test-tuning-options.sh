#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-tuning-options.sh — nbdsnapd's engine tuning options (core/tuning.h): a bad value stops nbdsnapd at start
# with exit status 2 and a message naming the option and its bounds; good values reach the engine (origin-info
# shows the chunk and tracking block sizes they give).
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 64M "$dir/disk.raw"

# expect_refused MESSAGE ARGS...: nbdsnapd with this test's origin must refuse to start (functions.sh).
expect_refused() { local message=$1; shift; expect_nbdsnapd_refused "$message" --origin "disk=$dir/disk.raw" "$@"; }

expect_refused "--chunk-min-shift 40 is out of range: it must be 12..30" --chunk-min-shift 40
expect_refused "--copy-io-size 48K is not a power of two: it must be 4K..64M, a power of two" --copy-io-size 48K
expect_refused "--tracking-block-max-count 0 is out of range: it must be 1..4294967296" --tracking-block-max-count 0
expect_refused "--chunk-max-shift 19 is below --chunk-min-shift 20: raise --chunk-max-shift to at least 20 or lower --chunk-min-shift" \
  --chunk-min-shift 20 --chunk-max-shift 19
echo "ok: bad tuning values stop nbdsnapd with the option's name and bounds"

start_nbdsnapd --origin "disk=$dir/disk.raw" --chunk-min-shift 16 --tracking-block-min-shift 20 \
  --tracking-block-max-shift 22 --chunk-buffer-budget 8M --copy-io-size 64K
info=$(ctl '{"command":"origin-info","name":"disk"}')
[[ $(jf "$info" 'r["origin"]["chunk_size"]') == 65536 ]] || fail "chunk size: $info"
[[ $(jf "$info" 'r["origin"]["tracking_block_size"]') == 1048576 ]] || fail "tracking block size: $info"
echo "ok: tuning values reach the engine"
