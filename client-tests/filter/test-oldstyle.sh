#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-oldstyle.sh — nbdkit -o (the oldstyle handshake: no options, no export names, and nbdkit opens the
# export before it sends its greeting), on a Unix socket and on IPv4 TCP. The filter once connected to its
# own socket from .open to read the export list; under -o that connection's open did the same, without end:
# thousands of connections, "Too many open files", control requests 5 s each and `origins` empty, clients
# refused. It now reads -o from nbdkit's command line and never connects to itself then:
# - control requests are answered at once; the origin is attached by the first client (there is no list),
#   with a URI that names no export;
# - nbdkit accepts no connection but the clients' (its connection numbers stay small);
# - writes of an oldstyle client are tracked (cbt-map), and a snapshot taken copies before overwriting;
# - an image has no URI (no oldstyle client can name one), also where the filter cannot connect to itself
#   (thread model serialize_connections), and nbdsnap refuses an image URI on an oldstyle server (exit 3):
#   libnbd would otherwise connect to the live origin and a backup copy the wrong data;
# - with the exportname filter above (default-export=, how oldstyle clients get one file of dir=), the name
#   it maps to is the one origin.
# Usage: test-oldstyle.sh FILTER.so NBDSNAP
FILTER=${1:?usage: $0 FILTER.so NBDSNAP}
NBDSNAP=${2:?usage: $0 FILTER.so NBDSNAP}
source "$(dirname "$0")/../functions.sh"
requires "$PY" -c 'import nbd'

# write_oldstyle URI BYTE OFFSET: one 64 KiB write by a libnbd client (nbdkit 1.32 advertises FUA and flush
# under -o but refuses both, so qemu-io cannot be the client); fails unless the protocol was oldstyle.
write_oldstyle() {
  "$PY" - "$@" <<'EOF' || fail "oldstyle write through $1 failed"
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
assert h.get_protocol() == "oldstyle", h.get_protocol()
h.pwrite(bytes([int(sys.argv[2], 0)]) * 65536, int(sys.argv[3]))
h.shutdown()
EOF
}

# check URI IMAGE_URI WHAT [ORIGIN]: the checks above against the nbdkit now running ($server_log); URI
# reaches its export, IMAGE_URI names the image of snapshot s, ORIGIN (default) is the origin's name.
check() {
  local base=$1 image_uri=$2 what=$3 origin=${4:-default} started reply ms
  started=$(date +%s%N)
  reply=$(timeout 30 "$PY" -m nbdsnap "$ctl" '{"command":"origins"}') || fail "$what: origins: $reply"
  ms=$((($(date +%s%N) - started) / 1000000))
  [[ $(jq -c .origins <<<"$reply") == "[]" ]] || fail "$what: origins before any client: $reply"
  pass "$what: origins answered in $ms ms (none before the first client)"
  write_oldstyle "$base" 0xa1 0
  reply=$(ctl '{"command":"origins"}')
  [[ $(jq -c '[.origins[] | [.name, .uri]]' <<<"$reply") == "[[\"$origin\",\"$base\"]]" ]] ||
    fail "$what: origins after the first client: $reply"
  [[ $(ctl '{"command":"cbt-map","origin":"'"$origin"'"}' | jq -c .ranges) == '[{"length":65536,"offset":0}]' ]] ||
    fail "$what: the oldstyle write was not tracked"
  ctl '{"command":"snapshot-create","name":"s","origins":["'"$origin"'"],"storage":[{"path":"'"$dir"'/s.diff","size":16777216}]}' \
    '{"command":"snapshot-take","name":"s"}' >/dev/null
  write_oldstyle "$base" 0xb2 0
  local info
  info=$(ctl '{"command":"snapshot-info","name":"s"}')
  [[ $(jq -r .snapshot.chunks_copied <<<"$info") == 1 ]] || fail "$what: no copy-on-write: $info"
  [[ $(jq -r '.snapshot.images[0].uri' <<<"$info") == "" ]] || fail "$what: an image URI under -o: $info"
  pass "$what: oldstyle writes tracked and copied before overwriting; the image has no URI"

  local status=0
  "$NBDSNAP" backup --image "$image_uri" --to "$dir/backup-$what.img" >"$dir/out" 2>"$dir/err" || status=$?
  ((status == 3)) || fail "$what: nbdsnap backup of $image_uri exited $status: $(cat "$dir/err")"
  grep 'oldstyle NBD handshake, which carries no export name' "$dir/err" >/dev/null ||
    fail "$what: the refusal does not say why: $(cat "$dir/err")"
  pass "$what: nbdsnap refuses the image URI on an oldstyle server (exit 3)"

  local highest
  highest=$(grep -oE 'file\[[0-9]+\]' "$server_log" | tr -dc '0-9\n' | sort -n | tail -n 1)
  # 3: the two writes and nbdsnap's refused one.
  ((highest <= 3)) || fail "$what: nbdkit accepted $highest connections (the filter connects to itself in a loop)"
  pass "$what: nbdkit accepted $highest connections in all"
  ctl '{"command":"snapshot-destroy","name":"s"}' >/dev/null
}

truncate -s 16M "$dir/disk.img"
start_filter -o file "$dir/disk.img" nbdsnap-state-dir="$dir/state"
check "nbd+unix:///?socket=$sock" "nbd+unix:///default@s?socket=$sock" unix
stop_server TERM

# IPv4 TCP, and -o after the plugin's arguments (nbdkit's getopt permutes them).
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -f "$ctl" "$dir/s.diff"
server_log=$dir/nbdkit-tcp.log
setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f -v -i 127.0.0.1 -p "$port" \
  --filter="$FILTER" file "$dir/disk.img" nbdsnap-state-dir="$dir/state" nbdsnap-control="$ctl" -o \
  </dev/null >"$server_log" 2>&1 {_nap_fd}>&- &
server_pid=$!
wait_for_path "$ctl" "$server_pid"
check "nbd://127.0.0.1:$port/" "nbd://127.0.0.1:$port/default@s" tcp
stop_server TERM

# A thread model that serializes connections: the filter could never connect to itself to find out.
rm -f "$dir/s.diff"
start_filter --log serialized -o --filter=noparallel file "$dir/disk.img" serialize=connections \
  nbdsnap-state-dir="$dir/state"
check "nbd+unix:///?socket=$sock" "nbd+unix:///default@s?socket=$sock" serialized
stop_server TERM

# The exportname filter above maps the oldstyle clients' "" to one file of dir=: that file is the origin.
mkdir "$dir/D"
truncate -s 16M "$dir/D/a.img" "$dir/D/b.img"
rm -f "$dir/s.diff" "$sock" "$ctl"
server_log=$dir/nbdkit-exportname.log
setsid env ${NBDSNAP_NBDKIT_PRELOAD:+LD_PRELOAD=$NBDSNAP_NBDKIT_PRELOAD} nbdkit -f -v -o -U "$sock" \
  --filter=exportname --filter="$FILTER" file dir="$dir/D" default-export=a.img nbdsnap-control="$ctl" \
  nbdsnap-state-dir="$dir/state-dir" </dev/null >"$server_log" 2>&1 {_nap_fd}>&- &
server_pid=$!
_await_ready
check "nbd+unix:///?socket=$sock" "nbd+unix:///a.img@s?socket=$sock" exportname a.img
file_holds "$dir/D/a.img" 0 64K 0xb2 || fail "exportname: the writes did not reach a.img"
file_holds "$dir/D/b.img" 0 64K 0x00 || fail "exportname: b.img was written"
pass "exportname: the oldstyle clients' writes reached a.img, the origin, alone"
stop_server TERM
