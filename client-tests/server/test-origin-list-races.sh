#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-origin-list-races.sh — STATE_DIR/origins.json names exactly the origins nbdsnapd serves, whatever
# the control calls race with and whatever its saves meet. An origin served but not listed is not served
# after a restart, and writes to its file then go untracked; one listed but detached comes back.
#  1. origin-attach k racing a non-forced origin-detach k (attaches of other origins beside them): after
#     every pair the engine's origins and the list agree, also across a restart.
#  2. a list that cannot be saved (a directory in the way of origins.json.tmp, which fails even for root):
#     an attach is refused naming the list and leaves nothing served; a detach is done but says the list
#     still names the origin; a second detach, once the list can be saved, unlists it.
#  3. a detach whose CBT state cannot be saved: done all the same (clients disconnected, origin unlisted),
#     and the reply says so.
NBDSNAPD=${1:?usage: $0 NBDSNAPD}
source "$(dirname "$0")/../functions.sh"

truncate -s 4M "$dir/k.raw" "$dir/m1.raw" "$dir/m2.raw" "$dir/o.raw"
mkdir "$dir/state"
start_nbdsnapd --state-dir "$dir/state" --origin "o=$dir/o.raw"

"$PY" - "$ctl" "$dir" "${ORIGIN_LIST_RACE_TRIES:-1500}" <<'PYEOF' || fail "origin list race (part 1)"
import json, sys, threading
from nbdsnap.client import Client
ctl, d, tries = sys.argv[1], sys.argv[2], int(sys.argv[3])

def listed():
    with open(f"{d}/state/origins.json") as fh:
        return sorted(o["name"] for o in json.load(fh)["origins"])

def served(client):
    return sorted(o["name"] for o in client.reply("origins")["origins"])

stop = False
def noise(name):  # list saves of other origins: the list's lock is taken and held around k's
    with Client(ctl) as c:
        while not stop:
            c.reply("origin-attach", name=name, path=f"{d}/{name}.raw")
            c.reply("origin-detach", name=name, force=True)
noisers = [threading.Thread(target=noise, args=(n,)) for n in ("m1", "m2")]
for t in noisers: t.start()
replies = {}
with Client(ctl) as ca, Client(ctl) as cd, Client(ctl) as cq:
    def attach(): replies["attach"] = ca.reply("origin-attach", name="k", path=f"{d}/k.raw")
    def detach(): replies["detach"] = cd.reply("origin-detach", name="k")
    try:
        for i in range(tries):
            ta, td = threading.Thread(target=attach), threading.Thread(target=detach)
            ta.start(); td.start(); ta.join(); td.join()
            engine_has = "k" in served(cq)
            list_has = "k" in listed()
            if engine_has != list_has:
                sys.exit(f"try {i}: served {engine_has}, listed {list_has}: "
                         f"{json.dumps(replies)[:400]}")
            if engine_has:
                cq.reply("origin-detach", name="k", force=True)
    finally:
        stop = True
        for t in noisers: t.join()
    if "k" in served(cq) or "k" in listed():
        sys.exit("k left behind")
print(f"part 1: {tries} races, list and engine agree")
PYEOF

# 2. The list cannot be saved.
mkdir "$dir/state/origins.json.tmp"
reply=$(ctl "{\"command\":\"origin-attach\",\"name\":\"k\",\"path\":\"$dir/k.raw\"}" || true)
[[ $(jf "$reply" 'r["error"]["code"]') == io_error ]] || fail "attach with an unsaveable list: $reply"
jf "$reply" 'r["error"]["message"]' | grep "origin 'k' not attached: the origin list .*origins.json" >/dev/null ||
  fail "the refusal does not name the origin and the list: $reply"
[[ $(jf "$(ctl '{"command":"origins"}')" '[o["name"] for o in r["origins"]]') == "['o']" ]] ||
  fail "a refused attach left k served"
nbdinfo "$(uri k)" >/dev/null 2>&1 && fail "a refused attach is served over NBD"
reply=$(ctl '{"command":"origin-detach","name":"o"}' || true)
jf "$reply" 'r["error"]["message"]' | grep "origin 'o' is detached, but the origin list .* could not be saved" >/dev/null ||
  fail "a detach whose list save failed: $reply"
nbdinfo "$(uri o)" >/dev/null 2>&1 && fail "o is still served after its detach"
rmdir "$dir/state/origins.json.tmp"
grep -q '"o"' "$dir/state/origins.json" || fail "o unlisted though the save failed"
ctl '{"command":"origin-detach","name":"o"}' >/dev/null || fail "the second detach of o"
grep -q '"o"' "$dir/state/origins.json" && fail "o still listed after the second detach"
ctl "{\"command\":\"origin-attach\",\"name\":\"k\",\"path\":\"$dir/k.raw\"}" >/dev/null || fail "attach once saveable"

# 3. A detach whose CBT state cannot be saved still detaches: its clients go, the list drops it, and the
# reply says what was lost. (The engine detached it; the reply used to be the save's bare error, with the
# clients left connected and the origin still listed.)
ctl "{\"command\":\"origin-attach\",\"name\":\"c\",\"path\":\"$dir/m1.raw\"}" >/dev/null || fail "attach c"
"$PY" -c 'import nbd, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1]); print("connected", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        h.pread(512, 0)
    except nbd.Error:
        print("disconnected", flush=True); sys.exit(0)
    time.sleep(0.1)' "$(uri c)" >"$dir/holder.out" 2>&1 &
holder=$!
track_pid "$holder"
for ((i = 0; i < 100; i++)); do grep connected "$dir/holder.out" >/dev/null 2>&1 && break; _nap 0.1; done
mkdir "$dir/state/c.cbt.tmp"
reply=$(ctl '{"command":"origin-detach","name":"c","force":true}' || true)
jf "$reply" 'r["error"]["message"]' | grep "origin 'c' is detached, but its CBT state could not be saved" >/dev/null ||
  fail "a detach whose CBT save failed: $reply"
rmdir "$dir/state/c.cbt.tmp"
grep '"c"' "$dir/state/origins.json" >/dev/null && fail "c is still listed after its detach"
[[ $(jf "$(ctl '{"command":"origins"}')" '[o["name"] for o in r["origins"]]') == "['k']" ]] || fail "c still served"
for ((i = 0; i < 100; i++)); do kill -0 "$holder" 2>/dev/null || break; _nap 0.1; done
grep disconnected "$dir/holder.out" >/dev/null || fail "the client of c was not disconnected: $(cat "$dir/holder.out")"
stop_server TERM
start_nbdsnapd --state-dir "$dir/state"
[[ $(jf "$(ctl '{"command":"origins"}')" '[o["name"] for o in r["origins"]]') == "['k']" ]] ||
  fail "after a restart: $(ctl '{"command":"origins"}')"
stop_server TERM
echo PASS
