#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-libnbdsnap.sh — the client library (libnbdsnap_live_test) and the Python package
# (python_package_live_test.py, from the source tree's python/) against a running server: nbdsnapd, or nbdkit
# with the nbdsnap filter over the file plugin.
# Usage: test-libnbdsnap.sh nbdsnapd|filter LIVE-TEST NBDSNAP (NBDSNAPD | FILTER.so)
front=$1
LIVE_TEST=$2
NBDSNAP=$3
source "$(dirname "$0")/../functions.sh"
use_front_end "$front" "$4"

mkdir -p "$dir/storage"
truncate -s 32M "$dir/disk.img" "$dir/storage/extra.img"  # extra.img: attached and detached by the live test
if [[ $front == nbdsnapd ]]; then
  start_nbdsnapd --origin "disk=$dir/disk.img"
  origin=disk front_end=nbdsnapd
else
  mkdir -p "$dir/state"
  start_filter file "$dir/disk.img" nbdsnap-state-dir="$dir/state"
  origin=default front_end=nbdkit-filter
fi
"$LIVE_TEST" "$NBDSNAP_CONTROL" "$origin" "$dir/storage" "$front_end" || fail "libnbdsnap against $front"
pass "libnbdsnap against $front"
/usr/bin/python3 "$(dirname "$0")/python_package_live_test.py" "$NBDSNAP_CONTROL" "$sock" "$origin" "$dir/storage" \
  "$front_end" || fail "the nbdsnap Python package against $front"
pass "the nbdsnap Python package against $front"
stop_server
