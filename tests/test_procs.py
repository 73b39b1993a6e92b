"""tests/procs.py: a stopped server's whole process group is gone, not only its leader."""

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


def test_stop_group_leaves_no_member_behind() -> None:
    proc = subprocess.Popen([sys.executable, "-c", LEADER], start_new_session=True)
    deadline = time.monotonic() + 20
    while len(group_members(proc.pid)) < 2:
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.1)
    stop_group(proc, timeout=2)
    assert proc.returncode is not None
    assert group_members(proc.pid) == []
