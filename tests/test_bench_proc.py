"""benchmarks/_proc.py: CPU readings of another process, fine enough for a quick run's window."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import _proc
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

pytestmark = pytest.mark.skipif(
    not os.path.exists(f"/proc/{os.getpid()}/task"), reason="needs Linux /proc"
)


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_window_shorter_than_a_clock_tick_still_reads_its_cpu() -> None:
    # 2 ms of CPU: under one 100 Hz tick, which utime + stime would often read as 0 (the CI
    # failure this module fixes: a quick run's Go echo at "0.0 us/msg").
    before = _proc.thread_cpu(os.getpid())
    _spin(0.002)
    spent = _proc.cpu_between(before, _proc.thread_cpu(os.getpid()))
    assert 0.002 <= spent < 0.5


def test_a_thread_started_inside_the_window_counts_from_zero() -> None:
    before = _proc.thread_cpu(os.getpid())
    started = threading.Event()
    release = threading.Event()

    def work() -> None:
        _spin(0.01)
        started.set()
        release.wait(10)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert started.wait(10)
        after = _proc.thread_cpu(os.getpid())
    finally:
        release.set()
        worker.join()
    assert isinstance(before, dict) and isinstance(after, dict)
    assert set(after) - set(before), "the new thread is in the second reading"
    assert _proc.cpu_between(before, after) >= 0.01


def test_readings_of_different_kinds_do_not_mix() -> None:
    with pytest.raises(ValueError, match="taken differently"):
        _proc.cpu_between(1.0, {"1": 5})
