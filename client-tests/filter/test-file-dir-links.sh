#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-file-dir-links.sh — `file dir=D` with links: one file is one origin however many names in D reach it.
# A hard link and a symbolic link to an origin's file are exports of the plugin, but the filter refuses to
# make them second origins, so no write reaches the file around the first origin's tracker (its image keeps
# the take-time bytes, its CBT sees every change). A link in D to a snapshot's difference storage, added after
# the snapshot was created, is refused too: copy-on-write data is never an origin. Files renamed in D after
# their origins were attached: an export that now reaches another file is refused, for writes and for images
# (which read their unchanged chunks through the export), until the file is back.
# Usage: test-file-dir-links.sh FILTER.so
FILTER=${1:?usage: $0 FILTER.so}
source "$(dirname "$0")/../functions.sh"

mkdir "$dir/D"
truncate -s 8M "$dir/D/a.img" "$dir/D/e.img"
ln "$dir/D/a.img" "$dir/D/b.img"
ln -s a.img "$dir/D/c.img"
start_filter --log links file dir="$dir/D" nbdsnap-chunk-min-shift=16

# Every control request attaches the listed exports first, in the plugin's (directory) order: which of the
# three names of a.img's file becomes the origin depends on that order, and exactly one does.
origins=$(ctl '{"command":"origins"}' | jq -c '[.origins[].name] | sort')
first=
for name in a.img b.img c.img; do
  if jq -e --arg n "$name" 'index($n)' <<<"$origins" >/dev/null; then
    [[ -z $first ]] || fail "two names of one file are origins: $origins"
    first=$name
  fi
done
[[ -n $first ]] || fail "no name of a.img's file is an origin: $origins"
jq -e 'index("e.img")' <<<"$origins" >/dev/null || fail "e.img is not an origin: $origins"
grep -q "is already in use: all of it is origin '$first'" "$server_log" ||
  fail "no message in nbdkit's log for the refused names"
pass "one of the names of a.img's file is an origin ($first), the others are refused"

qemu-io -f raw -c 'write -P 0x11 0 1M' "$(uri "$first")" >/dev/null
ctl '{"command":"snapshot-create","name":"s","origins":["'"$first"'"],"storage":[{"path":"'"$dir/s.diff"'","size":16777216}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"s"}' >/dev/null
for name in a.img b.img c.img; do
  [[ $name != "$first" ]] || continue
  if qemu-io -f raw -c 'write -P 0x99 0 1M' "$(uri "$name")" >"$dir/alias.out" 2>&1; then
    fail "a write through '$name', another name of origin '$first', was accepted"
  fi
done
qemu-io -f raw -r -c 'read -P 0x11 0 1M' "$(uri "$first@s")" >/dev/null ||
  fail "the image of '$first' does not hold its take-time bytes"
file_holds "$dir/D/a.img" 0 1M 0x11 || fail "the file changed behind the tracker"
ranges=$(ctl '{"command":"cbt-map","origin":"'"$first"'","since":"s"}' | jq -c .ranges)
[[ $ranges == '[]' ]] || fail "changes since the take without a write through '$first': $ranges"
pass "writes through the other names are refused: the image and CBT of '$first' stay right"

# A link to difference storage added to D after the snapshot was created.
qemu-io -f raw -c 'write -P 0x21 0 1M' "$(uri e.img)" >/dev/null
ctl '{"command":"snapshot-create","name":"t","origins":["e.img"],"storage":[{"path":"'"$dir/t.diff"'","size":16777216}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"t"}' >/dev/null
qemu-io -f raw -c 'write -P 0x22 0 1M' "$(uri e.img)" >/dev/null  # its old chunks go to t.diff
ln -s "$dir/t.diff" "$dir/D/t.img"
if qemu-io -f raw -c 'write -P 0x99 0 16M' "$(uri t.img)" >"$dir/storage.out" 2>&1; then
  fail "difference storage of snapshot 't' opened as an origin through D/t.img"
fi
grep -q "the device of origin 't.img' is already in use: .* difference storage of snapshot 't'" "$server_log" ||
  fail "no clear message for t.img: $(grep t.img "$server_log" | tail -n 2)"
qemu-io -f raw -r -c 'read -P 0x21 0 1M' "$(uri e.img@t)" >/dev/null ||
  fail "the image of e.img lost its take-time bytes"
[[ $(ctl '{"command":"snapshot-info","name":"t"}' | jq -r .snapshot.state) == taken ]] || fail "snapshot t is not taken"
pass "a link in D to difference storage is no origin: the image keeps its bytes"

# Two files swap names in D after their origins were attached and one was snapshotted.
truncate -s 8M "$dir/D/r1.img" "$dir/D/r2.img"
qemu-io -f raw -c 'write -P 0x31 0 1M' "$(uri r1.img)" >/dev/null
qemu-io -f raw -c 'write -P 0x32 0 1M' "$(uri r2.img)" >/dev/null
ctl '{"command":"snapshot-create","name":"r","origins":["r1.img"],"storage":[{"path":"'"$dir/r.diff"'","size":16777216}]}' >/dev/null
ctl '{"command":"snapshot-take","name":"r"}' >/dev/null
swap() { mv "$dir/D/r1.img" "$dir/D/swap" && mv "$dir/D/r2.img" "$dir/D/r1.img" && mv "$dir/D/swap" "$dir/D/r2.img"; }
swap
if qemu-io -f raw -c 'write -P 0x99 0 1M' "$(uri r2.img)" >"$dir/swap.out" 2>&1; then
  fail "a write through r2.img, now the file of origin 'r1.img', was accepted"
fi
if qemu-io -f raw -r -c 'read -P 0x32 0 1M' "$(uri r1.img@r)" >"$dir/swap.out" 2>&1; then
  fail "image r1.img@r read the file now named r1.img (r2.img's)"
fi
grep -q "export 'r1.img' is now another file than the one origin 'r1.img' was attached with" "$server_log" ||
  fail "no clear message for the swapped names"
swap
qemu-io -f raw -r -c 'read -P 0x31 0 1M' "$(uri r1.img@r)" >/dev/null || fail "image r1.img@r after the names came back"
file_holds "$dir/D/r1.img" 0 1M 0x31 || fail "r1.img's file changed"
pass "names swapped in D after attach: writes and image reads through them are refused until the files are back"
