"""Stopping a server a test started in its own session (``start_new_session=True``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid`` (Linux ``/proc``; elsewhere: the
    leader, if it still answers a signal)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:  # type: ignore[type-arg]
    """SIGTERM the process group ``proc`` leads, wait until every member has exited (not just the
    leader: ``airflow standalone`` exits before its scheduler does, and a scheduler can outlive
    it for good), then SIGKILL whatever is left."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader
        if not group_members(pgid):
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
