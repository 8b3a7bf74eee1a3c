"""A 64 MiB payload costs at most twice its size in RSS (file provider, fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[2] / "storage_rss_probe.py"


def run_probe(env: dict[str, str]) -> dict[str, dict[str, int]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    proc = subprocess.run(
        [sys.executable, str(PROBE)],
        env={**clean, **env},
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    result: dict[str, dict[str, int]] = json.loads(proc.stdout)
    return result


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_64_mib_costs_at_most_twice_its_size_on_the_file_store(tmp_path: Path) -> None:
    result = run_probe({"BUBU_STORAGE_PROVIDER": "file", "BUBU_STORAGE_PATH": str(tmp_path)})
    assert set(result) == {"dehydrate_string", "hydrate_string", "write_blob", "open_blob"}
    for op, m in result.items():
        assert m["cost"] <= 2 * m["size"], (op, m)
    # streaming writes and reads hold a chunk at a time, not the object
    assert result["dehydrate_string"]["cost"] < m["size"] // 2
    assert result["open_blob"]["cost"] < m["size"] // 2
