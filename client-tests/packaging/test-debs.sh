#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-debs.sh SOURCE-DIR — the Debian packages end to end on this machine: build them with
# packaging/build-debs, check them with lintian, install them with dpkg -i, check what they hold, start
# /usr/sbin/nbdsnapd the way nbdsnapd.service does (user nbdsnap, its runtime and state directories, umask,
# no capabilities, the unit's ExecStart and the packaged configuration plus one origin), take snapshots and
# back them up with /usr/bin/nbdsnap (full, then incremental, and into a qcow2 chain restored again), reach the
# service with a program built against the installed libnbdsnap (pkg-config) and with the installed Python
# package, stop with SIGTERM and check that CBT survives a restart, load the installed nbdkit filter, make
# 1,000 takes and incremental backups in a row through the packaged daemon and filter, then purge every
# package and check nothing is left.
#
# Exit 77 (skipped) when not root, or when nbdsnap packages are already installed (they would be replaced).
set -euo pipefail
top=$(cd "${1:?usage: test-debs.sh SOURCE-DIR}" && pwd)
packages=(nbdsnap nbdkit-nbdsnap-filter libnbdsnap0 libnbdsnap-dev python3-nbdsnap)

if (($(id -u) != 0)); then echo "SKIP: installing packages needs root"; exit 77; fi
for p in "${packages[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -v 'not-installed' >/dev/null; then
    echo "SKIP: package $p is already on this machine; not replacing it"
    exit 77
  fi
done
for tool in dpkg-buildpackage dh qemu-io qemu-img qemu-nbd nbdinfo g++ pkg-config; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing (scripts/install-deps installs it)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/nbdsnap-debs-test.XXXXXX)
pid=
user_existed=0
getent passwd nbdsnap >/dev/null && user_existed=1
conf=/etc/nbdsnap/nbdsnapd.conf
unit=/lib/systemd/system/nbdsnapd.service
sock=/run/nbdsnap/nbdsnapd.sock
ctl=/run/nbdsnap/control.sock
state=/var/lib/nbdsnap
log=$tmp/nbdsnapd.log

cleanup() {
  local status=$?
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  if ((status != 0)) && [[ -f $log ]]; then echo "---- nbdsnapd log ----" >&2; tail -n 40 "$log" >&2; fi
  local installed=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -v 'not-installed' >/dev/null && installed+=("$p")
  done
  ((${#installed[@]} == 0)) || dpkg -P "${installed[@]}" >/dev/null 2>&1 || true
  rm -rf /run/nbdsnap
  if ((user_existed == 0)) && getent passwd nbdsnap >/dev/null; then userdel nbdsnap 2>/dev/null || true; fi
  if ((user_existed == 0)) && getent group nbdsnap >/dev/null; then groupdel nbdsnap 2>/dev/null || true; fi
  rm -rf "$tmp"
  exit $status
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# --- build and lint
# NBDSNAP_TEST_DEBS=DIR tests the packages already in DIR instead of building them (for quick iterations).
debs=${NBDSNAP_TEST_DEBS:-$tmp/debs}
if [[ -z ${NBDSNAP_TEST_DEBS:-} ]]; then
  # Without -g: noautodbgsym drops the debug symbols anyway (dh_strip), so the shipped code is the same, and
  # the build, this test's long pole, compiles about a fifth faster (server/connection.cpp: 12.2 against 14.7
  # CPU s at -O2). nbdsnap-unity (debian/rules): a unity build, 152 CPU s instead of ~370 for the shipped
  # targets on a 2-core CI machine.
  DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=2 nbdsnap-unity" DEB_CFLAGS_STRIP=-g DEB_CXXFLAGS_STRIP=-g \
    "$top/packaging/build-debs" "$debs" >"$tmp/built.txt"
fi
deb() { ls "$debs/$1"_*.deb; }
for p in "${packages[@]}"; do deb "$p" >/dev/null || fail "no $p package built"; done
pass "built $(for p in "${packages[@]}"; do deb "$p"; done | xargs)"
if command -v lintian >/dev/null; then
  lintian --fail-on error $(for p in "${packages[@]}"; do deb "$p"; done) >"$tmp/lintian.txt" 2>&1 ||
    { cat "$tmp/lintian.txt"; fail "lintian errors"; }
  grep -E '^[WIP]:' "$tmp/lintian.txt" || true  # for review; only errors fail the test
  pass "lintian: no errors ($(grep -c '^W:' "$tmp/lintian.txt" || true) warnings)"
fi

# --- contents
expect_in() {  # PACKAGE PATH...
  local p=$1 listing; shift
  listing=$(dpkg -c "$(deb "$p")" | awk '{print $6}')
  for path in "$@"; do grep -qxF "./$path" <<<"$listing" || fail "$p lacks /$path"; done
}
filterdir=$(pkg-config --variable=filterdir nbdkit)
expect_in nbdsnap usr/sbin/nbdsnapd usr/bin/nbdsnap usr/share/man/man8/nbdsnapd.8.gz usr/share/man/man1/nbdsnap.1.gz \
  "${unit#/}" lib/systemd/system/nbdsnapd.socket lib/systemd/system/nbdsnapd-control.socket \
  usr/lib/sysusers.d/nbdsnap.conf "${conf#/}" usr/share/bash-completion/completions/nbdsnap \
  usr/share/doc/nbdsnap/guide.md usr/share/doc/nbdsnap/control.md usr/share/doc/nbdsnap/copyright
expect_in nbdkit-nbdsnap-filter "${filterdir#/}/nbdkit-nbdsnap-filter.so" usr/share/man/man1/nbdkit-nbdsnap-filter.1.gz
dpkg -c "$(deb nbdkit-nbdsnap-filter)" | grep 'nbdsnapd\|bin/nbdsnap' >/dev/null && fail "the filter package holds the daemon"
dpkg-deb -f "$(deb nbdkit-nbdsnap-filter)" Depends | grep 'nbdkit (>= ' >/dev/null || fail "filter does not depend on nbdkit"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
expect_in libnbdsnap0 "usr/lib/$multiarch/libnbdsnap.so.0"
expect_in libnbdsnap-dev usr/include/nbdsnap/client.h usr/include/nbdsnap/transport.h "usr/lib/$multiarch/libnbdsnap.so" \
  "usr/lib/$multiarch/pkgconfig/libnbdsnap.pc" usr/share/doc/libnbdsnap-dev/libnbdsnap.md
expect_in python3-nbdsnap usr/lib/python3/dist-packages/nbdsnap/__init__.py usr/lib/python3/dist-packages/nbdsnap/client.py \
  usr/lib/python3/dist-packages/nbdsnap/reply_shape.py usr/lib/python3/dist-packages/nbdsnap/reply_shapes.json
dpkg-deb -f "$(deb nbdsnap)" Depends | grep 'libnbdsnap0' >/dev/null || fail "nbdsnap does not depend on libnbdsnap0"
dpkg-deb -f "$(deb python3-nbdsnap)" Depends | grep 'python3' >/dev/null || fail "python3-nbdsnap does not depend on python3"
pass "dpkg -c: every package holds what it should"

# --- install
if ! dpkg -i $(for p in "${packages[@]}"; do deb "$p"; done) >"$tmp/dpkg-i.log" 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -f -y -qq >>"$tmp/dpkg-i.log" 2>&1 || { cat "$tmp/dpkg-i.log"; fail "dpkg -i"; }
fi
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" | grep 'install ok installed' >/dev/null || fail "$p not installed"
done
getent passwd nbdsnap >/dev/null || fail "postinst did not create the nbdsnap user"
dpkg-query -W -f='${Conffiles}' nbdsnap | grep "$conf" >/dev/null || fail "$conf is not a conffile"
/usr/sbin/nbdsnapd --version | grep '^nbdsnapd ' >/dev/null || fail "nbdsnapd --version"
/usr/bin/nbdsnap --version | grep '^nbdsnap ' >/dev/null || fail "nbdsnap --version"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$unit" /lib/systemd/system/nbdsnapd.socket /lib/systemd/system/nbdsnapd-control.socket \
    >"$tmp/verify.txt" 2>&1 || true
  if grep -v -e "Command 'man " -e 'man:' "$tmp/verify.txt" | grep . >/dev/null; then cat "$tmp/verify.txt"; fail "unit"; fi
fi
pass "installed: user nbdsnap, conffile, binaries run, unit verifies"

# --- the installed filter loads in nbdkit (it must match nbdkit's version exactly)
nbdkit -U - --filter=nbdsnap memory 16M nbdsnap-default-origin=ram --run 'nbdinfo --size "$uri"' >"$tmp/filter.txt" 2>&1 ||
  { cat "$tmp/filter.txt"; fail "nbdkit --filter=nbdsnap"; }
[[ $(cat "$tmp/filter.txt") == 16777216 ]] || fail "filter export size: $(cat "$tmp/filter.txt")"
pass "nbdkit loads the installed filter"

# --- nbdsnapd as the unit starts it
unit_value() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
exec_start=$(unit_value ExecStart)
run_user=$(unit_value User)
run_group=$(unit_value Group)
umask_value=$(unit_value UMask)
[[ $exec_start == "/usr/sbin/nbdsnapd --config $conf" ]] || fail "unexpected ExecStart: $exec_start"
[[ $(unit_value RuntimeDirectory) == nbdsnap && $(unit_value StateDirectory) == nbdsnap ]] || fail "unit directories"
make_unit_directories() {  # RuntimeDirectory= and StateDirectory=, owned by the unit's user
  install -d -o "$run_user" -g "$run_group" -m "$(unit_value RuntimeDirectoryMode)" /run/nbdsnap
  install -d -o "$run_user" -g "$run_group" -m "$(unit_value StateDirectoryMode)" "$state"
}
make_unit_directories
truncate -s 64M "$state/disk0.raw"
chown "$run_user:$run_group" "$state/disk0.raw"
echo "origin = disk0=$state/disk0.raw" >>"$conf"

start_service() {
  # What systemd does for the unit: directories for the user, then ExecStart as that user, with the unit's
  # umask, no capabilities, no new privileges, and a minimal environment.
  make_unit_directories
  # shellcheck disable=SC2086 # ExecStart is split into words as systemd does
  setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    setpriv --reuid="$run_user" --regid="$run_group" --init-groups --no-new-privs --inh-caps=-all \
    --bounding-set=-all -- sh -c "umask $umask_value; exec $exec_start" </dev/null >>"$log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do
    [[ -S $ctl && -S $sock ]] && return 0
    kill -0 "$pid" 2>/dev/null || fail "nbdsnapd exited at start"
    sleep 0.1
  done
  fail "nbdsnapd did not create its sockets"
}
stop_service() {  # SIGTERM, as systemctl stop does; checks the clean exit
  kill -TERM "$pid"
  local status=0
  wait "$pid" || status=$?
  pid=
  ((status == 0)) || fail "nbdsnapd exited $status on SIGTERM"
  grep -q 'stopped cleanly' "$log" || fail "no clean stop in the log"
}

start_service
[[ $(ps -o user= -p "$pid") == "$run_user" ]] || fail "nbdsnapd runs as $(ps -o user= -p "$pid")"
[[ $(stat -c %a "$ctl") == 600 ]] || fail "control socket mode $(stat -c %a "$ctl")"
[[ $(stat -c %U "$sock") == "$run_user" ]] || fail "NBD socket owner"
pass "nbdsnapd runs as $run_user with the packaged configuration"

export NBDSNAP_CONTROL=$ctl  # the CLI's default is the same path; set to be sure the test uses it
nbdsnap() { /usr/bin/nbdsnap "$@"; }
uri() { echo "nbd+unix:///$1?socket=$sock"; }
json() { /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
backup=$tmp/backup.raw

qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x12 8M 1M' "$(uri disk0)" >/dev/null
nbdsnap snapshot create s1 --origin disk0 --storage "$state/s1.diff:32M" >/dev/null
nbdsnap snapshot take s1 >/dev/null
qemu-io -f raw -c 'write -P 0x22 0 1M' "$(uri disk0)" >/dev/null   # after the take: not in s1's image
nbdsnap --json backup --image "$(uri disk0@s1)" --to "$backup" --verify >"$tmp/full.json"
[[ $(json 'r["kind"]' <"$tmp/full.json") == full ]] || fail "first backup: $(cat "$tmp/full.json")"
qemu-io -f raw -r -c 'read -P 0x11 0 1M' -c 'read -P 0x12 8M 1M' -c 'read -P 0 2M 1M' "$backup" >/dev/null ||
  fail "full backup does not hold s1's data"
nbdsnap snapshot destroy s1 >/dev/null
[[ -e $state/s1.diff ]] && fail "difference storage created for s1 was not removed"
pass "snapshot s1 taken, full backup equals the take-time data"

qemu-io -f raw -c 'write -P 0x33 4M 1M' "$(uri disk0)" >/dev/null
nbdsnap snapshot create s2 --origin disk0 --storage "$state/s2.diff:32M" >/dev/null
nbdsnap snapshot take s2 >/dev/null
nbdinfo --map=qemu:dirty-bitmap:s1 "$(uri disk0@s2)" >"$tmp/map.txt"
grep -q dirty "$tmp/map.txt" || fail "no dirty extents on disk0@s2 since s1: $(cat "$tmp/map.txt")"
nbdsnap --json backup --image "$(uri disk0@s2)" --to "$backup" --since s1 >"$tmp/incr.json"
[[ $(json 'r["kind"]' <"$tmp/incr.json") == incremental ]] || fail "second backup: $(cat "$tmp/incr.json")"
(($(json 'r["bytes_read"]' <"$tmp/incr.json") <= 4 << 20)) || fail "incremental backup read too much"
qemu-io -f raw -r -c 'read -P 0x22 0 1M' -c 'read -P 0x33 4M 1M' -c 'read -P 0x12 8M 1M' "$backup" >/dev/null ||
  fail "incremental backup does not hold s2's data"
pass "snapshot s2, incremental backup since s1 (qemu:dirty-bitmap:s1) equals the take-time data"

chain=$tmp/chain
nbdsnap --json backup --image "$(uri disk0@s2)" --format qcow2 --to "$chain" >"$tmp/chain.json"
nbdsnap restore "$chain" --to "$tmp/restored.raw" >/dev/null
qemu-img compare -q -f raw -F raw "$tmp/restored.raw" "$backup" || fail "restored point differs from the raw backup"
nbdsnap backup verify "$chain" >/dev/null || fail "backup verify of a fresh chain"
pass "qcow2 chain point written through qemu-nbd, restored, verified"

# A program built against the installed library (pkg-config libnbdsnap), and the installed Python package.
cat >"$tmp/agent.cpp" <<'CPP'
#include <cstdio>
#include <nbdsnap/client.h>
int main(int argc, char** argv) {
  auto client = nbdsnap::client::Client::connect(argv[1]);
  if (!client) { std::fprintf(stderr, "%s\n", client.error().describe().c_str()); return 1; }
  auto snapshots = client->snapshots();
  if (!snapshots) { std::fprintf(stderr, "%s\n", snapshots.error().describe().c_str()); return 1; }
  std::printf("%zu %s\n", snapshots->size(), snapshots->front().name.c_str());
  return 0;
}
CPP
# shellcheck disable=SC2046 # pkg-config prints separate flags
g++ -std=c++20 -o "$tmp/agent" "$tmp/agent.cpp" $(pkg-config --cflags --libs libnbdsnap) || fail "building against libnbdsnap"
[[ $("$tmp/agent" "$ctl") == "1 s2" ]] || fail "agent built on libnbdsnap: $("$tmp/agent" "$ctl" 2>&1)"
# (/lib is /usr/lib on a merged-/usr system, and ld.so.cache may name either.)
ldd "$tmp/agent" | grep -E "=> (/usr)?/lib/$multiarch/libnbdsnap.so.0 " >/dev/null || fail "agent does not use the installed library: $(ldd "$tmp/agent")"
(cd / && env -u PYTHONPATH /usr/bin/python3 -c 'import sys, nbdsnap
assert nbdsnap.__file__.startswith("/usr/lib/python3/dist-packages/"), nbdsnap.__file__
print(nbdsnap.Client(sys.argv[1]).snapshot_info("s2")["state"])' "$ctl") >"$tmp/python.txt" 2>&1 ||
  fail "the installed Python package: $(cat "$tmp/python.txt")"
[[ $(cat "$tmp/python.txt") == taken ]] || fail "python3-nbdsnap: $(cat "$tmp/python.txt")"
pass "a program built with pkg-config libnbdsnap and the installed nbdsnap Python package reach the service"

generation=$(nbdsnap --json cbt info disk0 | json 'r["cbt"]["generation"]')
stop_service
pass "SIGTERM: clean stop"
start_service
[[ $(nbdsnap --json cbt info disk0 | json 'r["cbt"]["generation"]') == "$generation" ]] ||
  fail "CBT generation changed across a clean restart"
nbdsnap --json checkpoints disk0 | grep '"s2"' >/dev/null || fail "checkpoint s2 lost across a clean restart"
[[ -e $state/s2.diff ]] && fail "difference storage of s2 survived the stop"
stop_service
pass "restart after a clean stop keeps the CBT generation and checkpoints"

# --- 1,000 takes in a row through the packaged binaries, each followed by an incremental backup, with both
# front ends: the optimised build runs the whole of client-tests/cli/test-cli-incremental-forever.sh (the
# ASan stage runs 300 of its rounds, client-tests/cli/CMakeLists.txt), across three compactions of the
# change numbers. Outside the service: a private directory and sockets of the test's own.
forever=$top/client-tests/cli/test-cli-incremental-forever.sh
"$forever" /usr/bin/nbdsnap nbdsnapd /usr/sbin/nbdsnapd 1000 >"$tmp/forever.txt" 2>&1 ||
  { cat "$tmp/forever.txt"; fail "1,000 takes through the packaged nbdsnapd"; }
"$forever" /usr/bin/nbdsnap filter "$filterdir/nbdkit-nbdsnap-filter.so" 1000 >"$tmp/forever.txt" 2>&1 ||
  { cat "$tmp/forever.txt"; fail "1,000 takes through the packaged filter"; }
pass "1,000 takes and incremental backups through the packaged nbdsnapd and filter"

# --- bench/run and bench/many-disks --smoke with the packaged (optimised) binaries: every peer starts, a report is
# written. bench-smoke (bench/CMakeLists.txt) needs uninstrumented binaries, which no default stage of
# scripts/test builds: the filter's lock on the origin files it tracks kept QEMU's peer (bench/run) and
# nbdsnapd (bench/many-disks) from starting, unseen for a day.
if command -v qemu-storage-daemon fio gnuplot >/dev/null; then
  "$top/bench/run" --smoke --nbdsnapd /usr/sbin/nbdsnapd --filter "$filterdir/nbdkit-nbdsnap-filter.so" \
    --dir "$tmp" --out "$tmp/bench-smoke" >"$tmp/bench.txt" 2>&1 ||
    { cat "$tmp/bench.txt"; fail "bench/run --smoke with the packaged nbdsnapd and filter"; }
  "$top/bench/many-disks" --smoke --nbdsnapd /usr/sbin/nbdsnapd --filter "$filterdir/nbdkit-nbdsnap-filter.so" \
    --dir "$tmp" --out "$tmp/many-disks-smoke" >"$tmp/bench.txt" 2>&1 ||
    { cat "$tmp/bench.txt"; fail "bench/many-disks --smoke with the packaged nbdsnapd and filter"; }
  pass "bench/run and bench/many-disks --smoke: every peer starts beside the packaged nbdsnapd and filter"
fi

# --- purge
dpkg -P nbdkit-nbdsnap-filter nbdsnap python3-nbdsnap libnbdsnap-dev libnbdsnap0 >"$tmp/purge.log" 2>&1 ||
  { cat "$tmp/purge.log"; fail "dpkg -P"; }
for path in /usr/sbin/nbdsnapd /usr/bin/nbdsnap /etc/nbdsnap "$unit" "$filterdir/nbdkit-nbdsnap-filter.so" "$state" \
  /usr/include/nbdsnap "/usr/lib/$multiarch/libnbdsnap.so.0" /usr/lib/python3/dist-packages/nbdsnap; do
  [[ -e $path ]] && fail "$path is left after purge"
done
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -v 'not-installed' >/dev/null && fail "$p still known to dpkg"
done
pass "dpkg -P removed every package, the configuration and the state"
echo PASS
