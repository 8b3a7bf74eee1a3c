"""``benchmarks/bench_vs_go.py --quick`` end to end, so the side-by-side driver cannot rot.

Runs the smoke mode (one round, few messages, a short trigger run on the real operator) and
checks that every case produced numbers for both SDKs, that the start-up figures and the
trigger medians are there and that every floor of issue 11 was judged. The numbers themselves
are not asserted: speed goals live in ``benchmarks/``, not in timed tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.interop]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_side_by_side_run_measures_every_case(
    interop_bin: Any, controlplane: Any, tmp_path: Path
) -> None:
    # controlplane: its binaries (built and cached) are what the trigger half starts its own
    # control plane and operator from.
    out = tmp_path / "vs_go.json"
    env = {**os.environ, "BUBU_INTEROP_BIN_DIR": str(interop_bin)}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_vs_go.py"),
            "--quick",
            "--json",
            str(out),
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["failures"] == []
    pinned = len(os.sched_getaffinity(0)) >= 2
    placements = ["pinned", "unpinned"] if pinned else ["unpinned"]
    for sdk in ("go", "bubu"):
        for payload in ("json", "audio"):
            for window in (64, 1):
                for placement in placements:
                    case = summary["cases"][f"{sdk}/{payload}/{window}/{placement}"]
                    assert case["rate"] > 0 and case["cpu_us"] > 0, case
                    assert 0 < case["p50_us"] <= case["p99_us"], case
        assert summary["startup"][sdk]["rss_mb"] > 0
        assert summary["startup"][sdk]["handshake_ms"] > 0
    assert {"go-shipped", "go-unthrottled", "bubu-out"} <= set(summary["triggers"])
    floors = [f["floor"] for f in summary["floors"]]
    assert len(floors) == (8 if pinned else 5), floors
    assert any(f.startswith("triggers/s >= 1.5x") for f in floors)
    assert "floors:" in proc.stdout and "ratio = bubu / Go" in proc.stdout
