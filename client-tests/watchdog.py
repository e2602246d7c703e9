#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""watchdog.py — runs one shell integration test so that it can neither outlive its time nor leave a process.

functions.sh re-executes every test under it: `watchdog.py BASH SCRIPT ARGS...`. It does three things ctest
cannot:

* It is the child subreaper of the test (prctl PR_SET_CHILD_SUBREAPER), so a process whose parent died (a
  forked helper of a client killed by `timeout`, a server whose test shell was killed) is reparented here
  rather than to init. When the test shell exits, every process still here is killed and reaped. ctest kills
  the tree it can see when a test times out and then waits for the test's output pipe to close: an orphan
  holding that pipe kept two filter tests "running" for 45 minutes in a loaded CI run (2026-12-03), with no
  word of where they hung.
* With NBDSNAP_TEST_TIMEOUT (the test's ctest TIMEOUT, in seconds; the CMakeLists pass it), it stops the test
  before ctest would, by a margin of 25-60 s (at most half the TIMEOUT): at the deadline it prints what every
  process of the test is doing (state, kernel wait channel, command line, and the threads' stacks of a
  server, or their wait channels if one is in uninterruptible sleep, where gdb would hang), then ends the
  clients the shell waits for and sends the shell SIGTERM, so the test fails through its own cleanup
  (servers stopped, their logs printed). Whatever still runs 5 s before ctest's TIMEOUT is killed.
* It exits with the test's status (128+N for a signal N), or 1 if the deadline was reached and the test
  exited 0 or 77 anyway.

Only processes that descend from this one are touched.
"""
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def say(text):
    print(f"watchdog: {text}", file=sys.stderr, flush=True)


def processes():
    """{pid: (ppid, session id, state, command name)} of every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), int(fields[3]), fields[0], name)
    return table


def descendants(root):
    """The pids below root, parents before children."""
    table = processes()
    children = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found, table


def read(path, limit=200):
    try:
        with open(path, "rb") as f:
            return f.read(4096).replace(b"\0", b" ").decode(errors="replace").strip()[:limit]
    except OSError:
        return "?"


def report(root, elapsed, budget):
    """Prints the processes below root and the stacks of its servers, in about `budget` seconds at most."""
    end = time.monotonic() + budget
    pids, table = descendants(root)
    say(f"the test still runs after {elapsed:.0f} s; its processes (pid ppid state wait-channel command):")
    for pid in pids:
        ppid, _sid, state, _name = table[pid]
        say(f"  {pid} {ppid} {state} {read(f'/proc/{pid}/wchan')} {read(f'/proc/{pid}/cmdline')}")
    for pid in pids:
        name = table[pid][3]
        if (name in ("nbdkit", "nbdsnapd") or name.startswith("qemu")) and time.monotonic() < end - 1:
            stacks(pid, name, end - time.monotonic())


def stacks(pid, name, seconds):
    """The user-space stacks of a server's threads (gdb, at most `seconds`), the lines that say where each is.

    gdb cannot attach to a thread in uninterruptible sleep (D: a frozen or stalled file system, which tests
    make on purpose): it waits for the thread to stop, deaf to SIGTERM. Such a process gets its threads' kernel
    wait channels instead, and gdb is killed (-k) if it overstays all the same."""
    waiting = {task: read(f"/proc/{pid}/task/{task}/wchan") for task in tasks_in_d_state(pid)}
    if waiting:
        say(f"  threads of {name} {pid} in uninterruptible sleep (no gdb): " +
            ", ".join(f"{task} {channel}" for task, channel in waiting.items()))
        return
    command = ["timeout", "-k", "1", f"{seconds:.1f}", "gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 12"]
    try:
        out = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                             timeout=seconds + 3).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        say(f"  (no stacks of {name} {pid}: {error})")
        return
    finally:
        # A gdb that was killed may leave its tracee stopped; the test's cleanup must find it running.
        signal_all([pid], signal.SIGCONT)
    lines = [line for line in out.splitlines() if line.startswith(("#", "Thread"))]
    say(f"  threads of {name} {pid}:" if lines else f"  (gdb gave no stacks of {name} {pid})")
    for line in lines[:200]:
        say(f"    {line[:160]}")


def tasks_in_d_state(pid):
    """The threads of pid in uninterruptible sleep."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        stat = read(f"/proc/{pid}/task/{task}/stat", 4096)
        if ")" in stat and stat[stat.rindex(")") + 2:].startswith("D"):
            found.append(task)
    return found


def signal_all(pids, signum):
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def reap_children():
    """Reaps every exited child without blocking; returns {pid: status}."""
    done = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = status


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: watchdog.py BASH SCRIPT [ARGS...]")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        say(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}; orphans go to init")
    setting = os.environ.get("NBDSNAP_TEST_TIMEOUT", "")
    try:
        timeout = float(setting or 0)
    except ValueError:
        say(f"NBDSNAP_TEST_TIMEOUT={setting!r} is not a number of seconds (ctest's TIMEOUT of the test); "
            "unset it or give seconds, as 300")
        sys.exit(2)
    # The margin before ctest's own kill: the report (gdb may take seconds per server under load) and the
    # test's cleanup must fit in it. At most half the time, so that a short TIMEOUT still leaves the test some.
    margin = min(60.0, max(25.0, timeout / 10), timeout / 2)
    deadline = time.monotonic() + timeout - margin if timeout > margin else None
    started = time.monotonic()

    # Orphans are reaped as soon as they exit, as init would: a test may check that a killed process is gone
    # (kill -0 succeeds on a zombie).
    reaped = {}
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: reaped.update(reap_children()))
    # The test keeps every descriptor it was given (a log, a jobserver's).
    shell = subprocess.Popen(sys.argv[1:], close_fds=False)
    # A signal to the watchdog (Ctrl-C, `timeout` around a test run by hand) goes to the test shell, whose
    # trap then runs the test's cleanup.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, _frame: signal_all([shell.pid], signum))

    status = None
    timed_out = False
    grace_end = None
    while status is None:
        reaped.update(reap_children())
        if shell.pid in reaped:
            status = os.waitstatus_to_exitcode(reaped[shell.pid])
            break
        now = time.monotonic()
        if deadline is not None and not timed_out and now >= deadline:
            timed_out = True
            # Half the margin for the report (gdb takes seconds per server under load), half for the cleanup.
            report(os.getpid(), now - started, margin / 2)
            # The shell defers its TERM trap until its foreground command ends: end the clients (every process
            # of the test but the shell that is not a server; servers are session leaders, started with setsid)
            # as well.
            pids, table = descendants(os.getpid())
            signal_all([shell.pid], signal.SIGTERM)
            signal_all([pid for pid in pids if pid != shell.pid and table[pid][1] != pid], signal.SIGKILL)
            grace_end = deadline + margin - 5
        if grace_end is not None and now >= grace_end:
            say("the test did not end within its grace period; killing all of it")
            pids, _table = descendants(os.getpid())
            signal_all(pids, signal.SIGKILL)
            grace_end = None
        time.sleep(0.05)
    shell.returncode = status  # reaped above; keeps Popen from waiting again

    # Orphans reparented here, and anything the shell left running.
    left, table = descendants(os.getpid())
    if left:
        say("killing what the test left running: " +
            "; ".join(f"{pid} ({read(f'/proc/{pid}/cmdline', 120)})" for pid in left if pid in table))
        signal_all(left, signal.SIGKILL)
        end = time.monotonic() + 10
        while descendants(os.getpid())[0] and time.monotonic() < end:
            reap_children()
            time.sleep(0.05)
        reap_children()
    if status < 0:
        status = 128 - status
    if timed_out:
        say(f"FAIL: the test ran into its deadline ({timeout - margin:.0f} s of ctest's {timeout:.0f} s)")
        if status in (0, 77):
            status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
