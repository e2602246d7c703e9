#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-cli-prune-interrupted.sh — a prune killed (SIGKILL) at each step that a crash can interrupt is finished
# by running it again: after the points are marked "pruning" (before qemu-img commit), after the commit (before
# the merged file is renamed over the kept point's), and after the rename (before the manifest records it).
# Meanwhile verify reports the unfinished prune, not damage, the kept points restore exactly (a point that
# goes is refused with the prune command that finishes the work); after the re-run every kept point verifies and reads as the disk at its take. The kill is deterministic:
# a qemu-img wrapper first in PATH kills its parent, the prune, when it is asked for one verb, once.
# Usage: test-cli-prune-interrupted.sh NBDSNAP NBDSNAPD
NBDSNAP=$1
source "$(dirname "$0")/../functions.sh"
NBDSNAPD=$2
requires qemu-img --version
requires qemu-nbd --version

truncate -s 8M "$dir/disk.img"
start_nbdsnapd --origin "disk=$dir/disk.img"
previous=
for n in 1 2 3 4; do
  write "0x$n$n" $(((n - 1) * 1048576)) 2M disk  # each point overwrites half of the one before
  run_cli 0 snapshot create "s$n" --origin disk --storage "$dir/s$n.diff:16M"
  run_cli 0 snapshot take "s$n"
  cp --sparse=always "$dir/disk.img" "$dir/ref-$n.img"
  run_cli 0 backup --image "$(uri "disk@s$n")" --to "$dir/master" --format qcow2 ${previous:+--since "$previous"}
  run_cli 0 snapshot destroy "s$n"
  previous=s$n
done

# qemu-img VERB RUN: once (while $dir/once exists), for VERB, runs the real qemu-img if RUN is yes, then kills
# the prune that started it.
real_qemu_img=$(command -v qemu-img)
mkdir "$dir/wrap"
cat >"$dir/wrap/qemu-img" <<EOF
#!/usr/bin/env bash
if [[ \$1 == "\$KILL_AT" && -e "$dir/once" ]]; then
  rm -f "$dir/once"
  [[ \$KILL_AFTER_RUN == yes ]] && "$real_qemu_img" "\$@"
  kill -KILL \$PPID
  exit 1
fi
exec "$real_qemu_img" "\$@"
EOF
chmod +x "$dir/wrap/qemu-img"

# interrupted_prune CASE VERB RUN: a copy of the 4-point chain, pruned to 2 and killed at VERB.
interrupted_prune() {
  chain=$dir/chain-$1
  cp -a "$dir/master" "$chain"
  touch "$dir/once"
  status=0
  PATH=$dir/wrap:$PATH KILL_AT=$2 KILL_AFTER_RUN=$3 "$NBDSNAP" backup prune "$chain" --keep 2 >"$dir/out" 2>&1 ||
    status=$?
  ((status == 137)) || fail "$1: the prune was not killed at qemu-img $2 (status $status): $(cat "$dir/out")"
  [[ $(jq -r '[.points[] | .state] | join(" ")' "$chain/nbdsnap-chain.json") == "pruning pruning complete complete" ]] ||
    fail "$1: manifest after the kill: $(cat "$chain/nbdsnap-chain.json")"
}

# finished CASE: verify names the unfinished prune (not damage), the re-run finishes it, the kept points read
# as the disk at their takes.
finished() {
  run_cli 1 backup verify "$chain"
  expect_err "no damage, but a prune did not finish \(points 0001, 0002(, 0003)?\); run 'nbdsnap backup prune .* --keep 2'"
  grep -q damaged <<<"$out$err" && fail "$1: verify calls the unfinished prune damage: $out"
  pushd "$dir" >/dev/null  # a relative DIR: qemu-img commit must still find the base
  run_cli 0 backup prune "${chain#"$dir"/}" --keep 2
  popd >/dev/null
  expect_out "finished.*a prune that did not finish"
  run_cli 0 backup verify "$chain"
  [[ $(jq -r '[.points[] | .name + .state] | join(" ")' "$chain/nbdsnap-chain.json") == \
    "0003complete 0004complete" ]] || fail "$1: manifest after the re-run: $(cat "$chain/nbdsnap-chain.json")"
  [[ ! -e $chain/0001.qcow2 && ! -e $chain/0002.qcow2 ]] || fail "$1: files left: $(ls "$chain")"
  for n in 3 4; do
    qemu-img compare -q -f qcow2 -F raw "$chain/000$n.qcow2" "$dir/ref-$n.img" ||
      fail "$1: point 000$n differs from the disk at its take"
  done
  pass "$1: verify reports the unfinished prune, running prune again finishes it, points 0003 and 0004 exact"
}

# restores CASE: before the re-run, the kept points restore exactly, a point that goes is refused.
restores() {
  run_cli 0 restore "$chain" --point 0003 --to "$dir/restored.img"
  qemu-img compare -q -f raw -F raw "$dir/restored.img" "$dir/ref-3.img" || fail "$1: restore of 0003"
  run_cli 0 restore "$chain" --to "$dir/restored.img"
  qemu-img compare -q -f raw -F raw "$dir/restored.img" "$dir/ref-4.img" || fail "$1: restore of 0004"
  run_cli 1 restore "$chain" --point 0002 --to "$dir/restored.img"
  expect_err "a prune that did not finish is removing it \(run 'nbdsnap backup prune .* --keep 2' to finish it\)"
}

interrupted_prune marked commit no
restores "killed before the commit"
finished "killed before the commit"

interrupted_prune committed commit yes
restores "killed after the commit"
finished "killed after the commit, before the rename"

interrupted_prune renamed map no
[[ -z $(qemu-img info --output=json "$chain/0003.qcow2" | jq -r '."backing-filename" // empty') ]] ||
  fail "the kill at map came before the rename"
restores "killed after the rename"
finished "killed after the rename, before the manifest records it"
run_cli 0 restore "$chain" --to "$dir/restored.img"
qemu-img compare -q -f raw -F raw "$dir/restored.img" "$dir/ref-4.img" || fail "restore after the re-run"
pass "the newest point restores after the finished prune"
