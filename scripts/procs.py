"""Stopping a server started in its own session (``start_new_session=True``): the whole process
group, not only its leader.

One stopper for everything that starts servers: ``scripts/stack.py`` (``make stack-down``), the
tests and the benchmarks. Standard library only, so each can import it without the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``.

    Args:
        pgid: The process group id (the pid of a leader started with ``start_new_session=True``).

    Returns:
        Their pids, read from Linux ``/proc``; elsewhere, ``[pgid]`` while the group still
        answers a signal.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
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


def stop_group(target: subprocess.Popen | int, timeout: float = 30.0) -> list[int]:  # type: ignore[type-arg]
    """Stop a process group: SIGTERM it, wait until every member has exited, SIGKILL the rest.

    Waiting for the leader alone is not enough: ``airflow standalone`` exits before its
    scheduler does, and a scheduler (or its executor's workers) can outlive the leader for good.
    A group whose leader has already died is still stopped, as long as a member is left.

    Args:
        target: The leader, as the ``Popen`` that started it (it is reaped too) or as its pid
            (from a pid file: a leader this process did not start).
        timeout: Seconds to wait after SIGTERM before SIGKILL.

    Returns:
        The pids that were still alive after ``timeout`` and got SIGKILL (empty when SIGTERM
        was enough).
    """
    leader = target if isinstance(target, subprocess.Popen) else None
    pgid = target.pid if isinstance(target, subprocess.Popen) else int(target)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = group_members(pgid)  # zombies do not count, so an unreaped leader does not hold us
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = group_members(pgid)
    if left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
    if leader is not None:
        leader.wait(timeout=10)  # reap the leader, or it stays a zombie
    return left
