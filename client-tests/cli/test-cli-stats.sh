#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-stats.sh — `nbdsnap stats` on one front end: the counters move by exactly what known writes and
# reads through real NBD clients (qemu-io, libnbd) did; --json parses; --prometheus passes the format checker
# (prometheus_check.py), with a snapshot name holding a quote and a backslash escaped in its labels; --output
# replaces a file atomically. Also `snapshot create` saying what it allocated, or that a file is sparse.
# Usage: test-cli-stats.sh NBDSNAP nbdsnapd|filter NBDSNAPD|FILTER.so
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
use_front_end "$2" "$3"
front_end=$FRONT_END
checker=$(dirname "$0")/prometheus_check.py

disk=$dir/disk.img
truncate -s 32M "$disk"
if [[ $front_end == nbdsnapd ]]; then
  origin=disk0
  start_nbdsnapd --origin "$origin=$disk"
else
  origin=default
  mkdir -p "$dir/state"
  start_filter file "$disk" nbdsnap-state-dir="$dir/state"
  qemu-io -f raw -r -c 'read 0 512' "$(uri '')" >/dev/null  # the first open attaches the origin
fi

# stats_of FILTER: one field of the origin's (or a snapshot's) stats, from `nbdsnap --json stats`.
stats_of() { "$NBDSNAP" --json stats | jq -r "$1"; }
origin_stat() { stats_of ".origins[] | select(.name == \"$origin\") | .$1"; }

run_cli 0 --json origins
block=$(jq_out ".origins[] | select(.name == \"$origin\") | .tracking_block_size")
chunk=$(jq_out ".origins[] | select(.name == \"$origin\") | .chunk_size")
writes0=$(origin_stat writes) reads0=$(origin_stat bytes_read) marked0=$(origin_stat cbt_blocks_marked)

# One 1 MiB write (one NBD request) and one 512 KiB read of the origin.
qemu-io -f raw -c 'write -P 0x11 0 1M' "$(uri "$origin")" >/dev/null
qemu-io -f raw -r -c 'read -P 0x11 0 512k' "$(uri "$origin")" >/dev/null
(( $(origin_stat writes) == writes0 + 1 )) || fail "writes: $(stats_of .)"
(( $(origin_stat bytes_written) >= 1048576 )) || fail "bytes written: $(stats_of .)"
(( $(origin_stat bytes_read) - reads0 >= 524288 )) || fail "bytes read: $(stats_of .)"
(( $(origin_stat cbt_blocks_marked) - marked0 == 1048576 / block )) || fail "CBT blocks marked ($block): $(stats_of .)"
(( $(origin_stat chunks_copied) == 0 )) || fail "chunks copied without a snapshot: $(stats_of .)"
pass "$front_end: origin writes, reads and CBT marks counted"

# A snapshot whose name needs escaping in Prometheus labels; its storage allocated at create.
snap='q"b\s'
run_cli 0 snapshot create "$snap" --origin "$origin" --storage "$dir/diff:16M"
expect_out "16\.0 MiB allocated in $dir/diff"
(( $(stat -c %b "$dir/diff") * 512 >= 16 << 20 )) || fail "storage not allocated: $(stat -c '%b %s' "$dir/diff")"
run_cli 0 snapshot take "$snap"
qemu-io -f raw -c 'write -P 0x22 0 1M' "$(uri "$origin")" >/dev/null
# Chunks held in memory count once the writeback stored them: wait for it (bounded).
want=$((1048576 / chunk))
for _ in $(seq 100); do (( $(origin_stat chunks_copied) == want )) && break; sleep 0.1; done
(( $(origin_stat chunks_copied) == want )) || fail "chunks copied (chunk $chunk): $(stats_of .)"
(( $(origin_stat bytes_copied) == 1048576 )) || fail "bytes copied: $(stats_of .)"
(( $(origin_stat copy_on_write_ns) > 0 )) || fail "no copy-on-write time: $(stats_of .)"
# Read 256 KiB of the image with libnbd (the export name holds a quote and a backslash).
/usr/bin/python3 - "$sock" "$origin@$snap" <<'PY'
import sys, nbd
h = nbd.NBD()
h.set_export_name(sys.argv[2])
h.connect_unix(sys.argv[1])
assert h.pread(262144, 0) == b"\x11" * 262144, "image does not hold the take-time data"
h.shutdown()
PY
snap_stat() { stats_of ".snapshots[] | select(.name == \"q\\\"b\\\\s\") | $1"; }
(( $(snap_stat '.images[0].reads') == 1 )) || fail "image reads: $(stats_of .)"
(( $(snap_stat '.images[0].bytes_read') == 262144 )) || fail "image bytes read: $(stats_of .)"
(( $(snap_stat .storage_used) == 1048576 )) || fail "storage used: $(stats_of .)"
(( $(snap_stat .storage_free) == (16 << 20) - 1048576 )) || fail "storage free: $(stats_of .)"
[[ $(snap_stat .state) == taken ]] || fail "state: $(stats_of .)"
pass "$front_end: chunks copied, copy-on-write time, image reads and storage counted"

run_cli 0 stats
expect_out "^ORIGIN +WRITES"
expect_out "^$origin +[0-9]+ "
expect_out "^$origin@q\"b\\\\s +1 +256\.0 KiB +[0-9]+$"
run_cli 0 --json stats
jq -e '.origins and .snapshots' <<<"$out" >/dev/null || fail "--json: $out"
pass "$front_end: table and --json"

run_cli 0 stats --prometheus --output "$dir/nbdsnap.prom"
[[ -z $out ]] || fail "--output also wrote to stdout: $out"
[[ ! -e $dir/nbdsnap.prom.tmp ]] || fail "--output left its temporary file"
samples=$(/usr/bin/python3 "$checker" "$dir/nbdsnap.prom") || fail "prometheus format: $(cat "$dir/nbdsnap.prom")"
value() { jq -r ".[] | select(.name == \"$1\" and .labels == $2) | .value" <<<"$samples"; }
[[ $(value nbdsnap_origin_copied_bytes_total "{\"origin\": \"$origin\"}") == 1048576 ]] ||
  fail "copied bytes sample: $samples"
[[ $(value nbdsnap_image_read_bytes_total "{\"origin\": \"$origin\", \"snapshot\": \"q\\\"b\\\\s\"}") == 262144 ]] ||
  fail "escaped image labels: $(grep image_read_bytes "$dir/nbdsnap.prom")"
grep -Fq 'snapshot="q\"b\\s"' "$dir/nbdsnap.prom" || fail "label not escaped: $(grep snapshot= "$dir/nbdsnap.prom")"
run_cli 2 --json stats --prometheus
# --output never replaces what is not a regular file (as root, --output /dev/full made it a regular file).
mkfifo "$dir/fifo"
echo keep >"$dir/victim"
ln -s "$dir/victim" "$dir/link"
for target in fifo link; do
  run_cli 4 stats --prometheus --output "$dir/$target"
  [[ $err == *"is not a regular file"* ]] || fail "--output $target: $err"
done
[[ -p $dir/fifo && -L $dir/link && $(cat "$dir/victim") == keep ]] || fail "--output replaced a FIFO or a link"
pass "$front_end: --prometheus passes the format checker, labels escaped, --output atomic, never over a non-file"

run_cli 0 snapshot append-storage "$snap" "$dir/more:8M" --sparse
expect_out "^sparse: $dir/more \(8\.0 MiB\)"
(( $(stat -c %b "$dir/more") * 512 < 1 << 20 )) || fail "sparse storage allocated: $(stat -c '%b %s' "$dir/more")"
run_cli 2 snapshot append-storage "$snap" "$dir/diff:0+1M" --sparse
expect_err "sparse applies to files created at a size"
run_cli 0 snapshot destroy "$snap"
pass "$front_end: append-storage --sparse says it is sparse and allocates nothing"
