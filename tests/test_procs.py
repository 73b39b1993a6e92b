"""scripts/procs.py: a stopped server's whole process group is gone, not only its leader."""

from __future__ import annotations

import subprocess
import sys
import time

from procs import group_members, stop_group  # type: ignore[import-not-found]

# The leader exits on SIGTERM; its child ignores SIGTERM (as a scheduler busy shutting down can).
LEADER = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(120)
"""

# The leader starts a child and exits at once: the child is an orphan of a dead leader, as a
# scheduler's executor workers are after the scheduler crashed.
ORPHANING = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
"""


def _wait_for(pgid: int, n: int) -> None:
    deadline = time.monotonic() + 20
    while len(group_members(pgid)) < n:
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.1)


def test_stop_group_leaves_no_member_behind() -> None:
    proc = subprocess.Popen([sys.executable, "-c", LEADER], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    # the child prints once it ignores SIGTERM: counting it among the group's members raced
    # its start-up (under load it was still starting, and SIGTERM alone ended it)
    assert proc.stdout.readline().strip() == "up"
    killed = stop_group(proc, timeout=2)
    assert proc.returncode is not None
    assert group_members(proc.pid) == []
    assert len(killed) == 1, "only the child that ignored SIGTERM needed SIGKILL"


def test_stop_group_by_pid_stops_the_orphans_of_a_dead_leader() -> None:
    """`make stack-down` knows a service by the pid in its pid file; the leader may be gone."""
    proc = subprocess.Popen([sys.executable, "-c", ORPHANING], start_new_session=True)
    proc.wait(timeout=20)
    _wait_for(proc.pid, 1)
    orphans = group_members(proc.pid)
    assert proc.pid not in orphans
    killed = stop_group(proc.pid, timeout=5)
    assert killed == [], "the orphan exits on SIGTERM"
    assert group_members(proc.pid) == []
