"""Faults: a killed run does not stay STARTED, an interrupted measurement stops on the server.

- `run_tags()`: tags every run dbarch launches in its own process with that process (host, pid).
- `fail_orphaned_runs(instance)`: at the start of the next run, runs still STARTED whose process is
  gone are marked failed, saying why (Dagster's run monitoring does the same for daemon-launched
  runs, see dagster.yaml).
- `interrupt_on_sigterm()`: SIGTERM becomes KeyboardInterrupt, on which psycopg cancels the statement
  in flight (a SIGKILL cannot be caught: `client_connection_check_interval`, set on every session,
  stops the orphaned statement within a second).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # dagster is imported when used: the signal handling stays light
    import dagster as dg

PID_TAG, HOST_TAG = "dbarch/pid", "dbarch/host"


def run_tags() -> dict[str, str]:
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphaned_runs(instance: "dg.DagsterInstance") -> list[str]:
    """Mark failed the runs of this host left STARTED by a process that no longer exists."""
    import dagster as dg

    failed = []
    host = socket.gethostname()
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                            dg.DagsterRunStatus.STARTING],
                                                  tags={HOST_TAG: host}))
    for run in runs:
        try:
            pid = int(run.tags.get(PID_TAG, ""))
        except ValueError:
            continue
        if pid == os.getpid() or not _alive(pid):
            instance.report_run_failed(run, message=f"the process running it (pid {pid} on {host}) is gone: it was "
                                                    "killed or crashed; marked failed when the next run started")
            failed.append(run.run_id)
    return failed


def interrupt_on_sigterm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
