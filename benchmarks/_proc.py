"""Process CPU time from Linux ``/proc``, for the benchmarks that measure other processes.

Two readings, because they fail differently:

* :func:`cpu_seconds` is ``utime + stime`` from ``/proc/<pid>/stat``: it counts threads that
  have exited, but only in clock ticks (10 ms at the usual 100 Hz), so a window of a few hundred
  echoes can read 0;
* :func:`thread_cpu` sums each live thread's ``schedstat`` (nanoseconds on CPU): precise, but a
  thread that exits inside the window takes its time with it. The echo engrams' threads (Go's
  runtime threads, bubu's event loop) live as long as the process, so for them it is exact.
"""

from __future__ import annotations

import os

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """``utime + stime`` of a process, in seconds (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> dict[str, int] | float:
    """Nanoseconds on CPU of each live thread of ``pid``, by thread id; where the kernel keeps no
    ``schedstat``, :func:`cpu_seconds` instead (a float)."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as fh:
                out[tid] = int(fh.read().split()[0])
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # exited between the listing and the read
            return cpu_seconds(pid)  # no schedstat on this kernel
    return out


def cpu_between(before: dict[str, int] | float, after: dict[str, int] | float) -> float:
    """Seconds on CPU between two :func:`thread_cpu` readings of one process: each thread's
    growth, a thread started in between counted from 0."""
    if isinstance(before, float) or isinstance(after, float):
        if isinstance(before, float) and isinstance(after, float):
            return after - before
        raise ValueError("the two readings were taken differently")
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9
