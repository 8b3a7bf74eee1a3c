"""``bubu run`` with storage: a file store by default, ``--storage-path``, ``--no-storage``."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from tests.unit.cli.test_cli import ROOT, bubu

JSON_FILTER = ROOT / "examples" / "json-filter" / "json_filter.py"

BIG = textwrap.dedent("""
    import bubu

    class Big(bubu.BatchEngram[dict, dict]):
        async def process(self, ctx, inputs):
            return bubu.Result({"report": "r" * 4000, "n": 1})
""")


def _store(root: Path, path: str, data: object) -> dict[str, str]:
    # The stored-object format of the operator's storage package (docs/storage.md).
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"contentType": "json", "data": data}))
    return {"$bubuStorageRef": path}


def test_storage_refs_in_inputs_resolve_in_the_given_store(tmp_path: Path) -> None:
    ref = _store(tmp_path, "outputs/ns/fetch/output.json", [{"id": "9", "name": "nine"}])
    inputs = {"input": ref, "select": {"matchField": "name", "matchValue": "nine"}}
    out = bubu(
        "run", str(JSON_FILTER), "--inputs", json.dumps(inputs), "--storage-path", str(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"resultSelected": {"value": {"id": "9", "name": "nine"}}}


def test_large_output_goes_to_a_temporary_store_that_is_kept(tmp_path: Path) -> None:
    engram = tmp_path / "big.py"
    engram.write_text(BIG)
    out = bubu("run", str(engram))
    assert out.returncode == 0, out.stderr
    output = json.loads(out.stdout)
    assert output["n"] == 1 and output["report"]["$bubuStorageRef"] == "outputs/report.json"
    found = re.search(r"offloaded data is in (\S+)", out.stderr)
    assert found, out.stderr
    stored = Path(found.group(1)) / "outputs/report.json"
    assert json.loads(stored.read_text()) == {"contentType": "raw", "data": "r" * 4000}


def test_small_output_leaves_no_temporary_store(tmp_path: Path) -> None:
    out = bubu("run", str(ROOT / "examples" / "hello.py"), "--inputs", '{"name": "Ada"}')
    assert out.returncode == 0 and "offloaded data" not in out.stderr


def test_no_storage_refuses_a_large_output_as_a_cluster_without_storage(tmp_path: Path) -> None:
    engram = tmp_path / "big.py"
    engram.write_text(BIG)
    out = bubu("run", str(engram), "--no-storage")
    assert out.returncode == 1
    assert "output size 4019 bytes exceeds inline limit 1024 and storage is disabled" in out.stderr
    limit = bubu("run", str(engram), "--no-storage", "--max-inline-size", "5000")
    assert limit.returncode == 0 and json.loads(limit.stdout)["report"] == "r" * 4000


def test_a_ref_without_storage_is_named(tmp_path: Path) -> None:
    inputs = {"input": {"$bubuStorageRef": "outputs/x.json"}}
    out = bubu("run", str(JSON_FILTER), "--inputs", json.dumps(inputs), "--no-storage")
    assert out.returncode == 1
    assert (
        "failed to hydrate inputs: found storage reference in inputs but storage is disabled"
        in out.stderr
    )
