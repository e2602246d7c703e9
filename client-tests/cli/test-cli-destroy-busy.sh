#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-destroy-busy.sh — `snapshot destroy` while a client reads an image (issue 20, item 4): refused with
# exit status 1 and code busy naming the image's client count (in text and with --json), `snapshot info`
# shows the clients in its images table; `destroy --force` works and the held client then gets errors on its
# reads, never other data. Without clients a destroy goes through at once. Run once per front end.
# Usage: test-cli-destroy-busy.sh NBDSNAP nbdsnapd NBDSNAPD
#        test-cli-destroy-busy.sh NBDSNAP filter FILTER.so
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
use_front_end "$2" "$3"
front_end=$FRONT_END

disk=$dir/disk.img
truncate -s 16M "$disk"
if [[ $front_end == nbdsnapd ]]; then
  start_nbdsnapd --origin "disk=$disk"
  origin=disk write_export=disk
  storage=(--storage "$dir/s.diff:16M")
else
  mkdir "$dir/diffs"
  start_filter file "$disk" nbdsnap-state-dir="$dir/state" nbdsnap-storage="$dir/diffs:16M" \
    nbdsnap-default-origin=disk
  origin=disk write_export=''  # the plugin's default export: its first open attaches origin "disk"
  storage=()
fi
write 0x5a 0 1M "$write_export"
run_cli 0 snapshot create s --origin "$origin" "${storage[@]}"
run_cli 0 snapshot take s

# A client holds the image open (libnbd, as a backup agent does).
mkfifo "$dir/go"
/usr/bin/python3 "$(dirname "$0")/held_image_client.py" "$(uri "$origin@s")" "$dir/ready" "$dir/go" \
  >"$dir/held.out" 2>&1 &
held_pid=$!
track_pid "$held_pid"
for _ in $(seq 300); do [[ -e $dir/ready ]] && break; kill -0 "$held_pid" 2>/dev/null || break; sleep 0.1; done
[[ -e $dir/ready ]] || fail "the held client did not open the image: $(cat "$dir/held.out")"

run_cli 0 snapshot info s
expect_out "^$origin +$origin@s +1( |$)"
expect_out "CLIENTS"
pass "snapshot info shows the image's client in its table"

run_cli 1 snapshot destroy s
expect_err "snapshot 's' has image clients \\($origin@s: 1 client\\): disconnect them, or destroy with force"
expect_err "\\(busy\\)$"
run_cli 1 --json snapshot destroy s
[[ $(jq_out .error.code) == busy ]] || fail "--json destroy: $out"
[[ -z $err ]] || fail "--json destroy printed on stderr: $err"
run_cli 0 --json snapshot info s
[[ $(jq_out .snapshot.state) == taken ]] || fail "a refused destroy changed the snapshot: $out"
pass "destroy with a client reading the image is refused (busy, 1 client)"

run_cli 0 snapshot destroy s --force
echo go >"$dir/go"
for _ in $(seq 300); do kill -0 "$held_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$held_pid" 2>/dev/null && fail "the held client did not finish its read"
# EIO (5) from both front ends: the data is gone, the request was not wrong (the filter once gave EINVAL).
grep -q "^read failed: errno 5: " "$dir/held.out" ||
  fail "the held client's read after destroy --force: $(cat "$dir/held.out")"
pass "destroy --force: the held client's read fails: $(cat "$dir/held.out")"

# No client: destroy at once (and a client that just closed is not counted).
run_cli 0 snapshot create t --origin "$origin" "${storage[@]/s.diff/t.diff}"
run_cli 0 snapshot take t
qemu-io -r -f raw -c 'read -P 0x5a 0 1M' "$(uri "$origin@t")" >/dev/null || fail "reading image t"
run_cli_within 20 0 snapshot destroy t
pass "destroy without clients, right after one closed ($elapsed_ms ms)"
