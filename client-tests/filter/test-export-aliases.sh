#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-export-aliases.sh — one disk is one origin: over plugins that ignore export names (memory, file with
# file= and with the bare file argument), a client asking for another export name is refused at NBD_OPT_GO,
# so it cannot write the disk behind the tracker; the image keeps its take-time bytes. Under a plugin that
# serializes all requests the filter reads the list without waiting on nbdkit's handshake lock.
# Usage: test-export-aliases.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

truncate -s 16M "$dir/disk.img"

# check_aliases LABEL PLUGIN-ARGS...: snapshot of the default export, then writes through other names.
check_aliases() {
  local label=$1; shift
  start_filter --log "$label" "$@" nbdsnap-chunk-min-shift=16
  qemu-io -f raw -c 'write -P 0x11 0 4M' "$(uri '')" >/dev/null
  ctl '{"command":"snapshot-create","name":"s","origins":["default"],"storage":[{"path":"'"$dir/$label.diff"'","size":16777216}]}' >/dev/null
  ctl '{"command":"snapshot-take","name":"s"}' >/dev/null

  for alias in other disk.img other@s; do
    if qemu-io -f raw -c 'write -P 0x99 0 1M' "$(uri "$alias")" >"$dir/alias.out" 2>&1; then
      fail "$label: a write through export '$alias' was accepted: $(cat "$dir/alias.out")"
    fi
  done
  grep -q "Requested export not available" "$dir/alias.out" || fail "$label: qemu-io said: $(cat "$dir/alias.out")"
  grep -q "export 'other' is refused: export 'other' is not one of the plugin's exports (\"\")" "$server_log" ||
    fail "$label: no clear message in nbdkit's log"
  if nbdinfo "$(uri other)" >"$dir/nbdinfo.out" 2>&1; then fail "$label: nbdinfo opened 'other'"; fi
  qemu-io -f raw -r -c 'read -P 0x11 0 4M' "$(uri default@s)" >/dev/null ||
    fail "$label: the image does not hold the take-time bytes"
  qemu-io -f raw -r -c 'read -P 0x11 0 4M' "$(uri '')" >/dev/null || fail "$label: the origin changed"
  origins=$(ctl '{"command":"origins"}' | jq -c '[.origins[].name]')
  [[ $origins == '["default"]' ]] || fail "$label: origins are $origins"
  # The default origin's own name and its image still open.
  qemu-io -f raw -c 'write -P 0x22 4M 1M' "$(uri default)" >/dev/null || fail "$label: export 'default' refused"
  qemu-io -f raw -r -c 'read -P 0x11 0 4M' "$(uri default@s)" >/dev/null || fail "$label: image changed"
  pass "$label: writes through other export names are refused at NBD_OPT_GO; the image keeps take-time bytes"
  stop_server
}

check_aliases memory memory 16M
check_aliases file-key file file="$dir/disk.img"
check_aliases file-bare file "$dir/disk.img"

# A plugin that serializes all requests: nbdkit holds one lock through every handshake, so the filter must not
# wait for a connection of its own from inside .open. A name not yet seen in a list is refused at once; a
# control request reads the list (outside any handshake) and makes the listed exports origins.
check_serialized() {
  start_filter --log serialized eval thread_model='echo serialize_all_requests' list_exports='echo a; echo b' \
    get_size='echo 1048576' pread='dd if=/dev/zero count=$3 iflag=count_bytes status=none' \
    pwrite='cat >/dev/null' can_write='exit 0'
  start=$(date +%s%N)
  if nbdinfo "$(uri a)" >/dev/null 2>&1; then fail "serialized: 'a' opened before any list was read"; fi
  (( ($(date +%s%N) - start) / 1000000 < 3000 )) || fail "serialized: the refusal waited for nbdkit's lock"
  grep -q "the list is read before control requests only" "$server_log" || fail "serialized: no reason in the log"
  origins=$(ctl '{"command":"origins"}' | jq -c '[.origins[].name] | sort')
  [[ $origins == '["a","b"]' ]] || fail "serialized: origins after a control request: $origins"
  qemu-io -f raw -c 'write -P 0x33 0 64K' "$(uri a)" >/dev/null || fail "serialized: listed export 'a' refused"
  if nbdinfo "$(uri other)" >/dev/null 2>&1; then fail "serialized: 'other' opened"; fi
  pass "serialize_all_requests: no self-connection inside a handshake; control requests read the list"
  stop_server
}
# The eval plugin runs shell scripts, which the TSan runtime preloaded into nbdkit crashes.
if [[ ${NBDSNAP_NBDKIT_PRELOAD:-} == *tsan* ]]; then echo "skipped under TSan: serialize_all_requests (eval plugin)"
else check_serialized; fi

# nbdkit on IPv4 TCP only: the filter finds its listener in /proc/net/tcp and reads the list there.
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -f "$ctl"
setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f -v -i 127.0.0.1 -p "$port" \
  --filter="$FILTER" memory 16M nbdsnap-control="$ctl" </dev/null >"$dir/nbdkit-tcp.log" 2>&1 &
track_pid "$!"
wait_for_path "$ctl" "$!"
origins=$(ctl '{"command":"origins"}' | jq -c '[.origins[] | [.name, .uri]]')
[[ $origins == "[[\"default\",\"nbd://127.0.0.1:$port/default\"]]" ]] || fail "tcp: origins $origins"
if nbdinfo "nbd://127.0.0.1:$port/other" >/dev/null 2>&1; then fail "tcp: 'other' opened"; fi
grep -q "export 'other' is not one of the plugin's exports" "$dir/nbdkit-tcp.log" || fail "tcp: no reason in the log"
pass "over TCP: the filter reads the list from its own listener"
echo "what a client sees: $(head -n 3 "$dir/nbdinfo.out" | tr '\n' ' ')"
