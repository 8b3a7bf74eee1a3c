# ruff: noqa: E501
"""Benchmark: runtime templates and schema validation, next to the Go SDK's packages.

Two operations, each timed in this process and by the Go oracle
(tests/interop/cmd/templating, built and cached by tests/_controlplane/build.py) in the same
run, on the same data:

* resolve a 100-field input map of templates (paths, pipelines, printf, Sprig calls, a
  ``$bubuTemplate`` wrapper) against a step context: bubu's ``Evaluator.resolve_value`` vs
  core/templating's ``ResolveValue``;
* validate a 1,000-item payload against a 50-property schema: bubu's compiled jsonschema-rs
  validator vs gojsonschema as the Go SDK calls it (``Validate``, compiling each time) and with
  the schema compiled once.

    python benchmarks/bench_templates.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bubu._schema import compile_schema, normalize_schema  # noqa: E402
from bubu._templating import Evaluator, TemplateConfig  # noqa: E402
from bubu._templating._gojson import go_json  # noqa: E402
from tests._controlplane import build  # noqa: E402

TEMPLATE_KINDS = [
    "{{ .inputs.user.name }}",
    "{{ .steps.fetch.output.items }}",
    "{{ .inputs.user.name | upper }}",
    "hello {{ .inputs.user.name }}, you are {{ .inputs.user.age }}",
    '{{ printf "%s-%05d" .inputs.user.id (int .inputs.user.age) }}',
    '{{ default "none" .inputs.user.nickname }}',
    "{{ len .steps.fetch.output.items }}",
    "{{ toJson .inputs.user }}",
    "{{ if gt .inputs.user.age 18.0 }}adult{{ else }}minor{{ end }}",
    "{{ range .steps.fetch.output.items }}{{ .id }},{{ end }}",
]


def payload() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for i in range(100):
        if i % 25 == 0:
            fields[f"f{i}"] = {
                "$bubuTemplate": "{{ .x }}-{{ .inputs.user.id }}",
                "$bubuTemplateVars": {"x": i},
            }
        else:
            fields[f"f{i}"] = TEMPLATE_KINDS[i % len(TEMPLATE_KINDS)]
    return fields


VARS = {
    "inputs": {"user": {"name": "Ada", "age": 36, "id": "u-1", "tags": ["a", "b"]}},
    "steps": {"fetch": {"output": {"items": [{"id": n, "v": n * 1.5} for n in range(10)]}}},
}


def schema_and_doc() -> tuple[dict[str, Any], dict[str, Any]]:
    kinds = ["string", "integer", "number", "boolean"]
    props: dict[str, Any] = {}
    for i in range(50):
        kind = kinds[i % 4]
        prop: dict[str, Any] = {"type": kind}
        if kind == "string":
            prop["minLength"] = 1
        if kind == "integer":
            prop["minimum"] = 0
        props[f"p{i}"] = prop
    item = {"type": "object", "properties": props, "required": [f"p{i}" for i in range(0, 50, 5)]}
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": item}},
        "required": ["items"],
    }
    sample = {"string": "x", "integer": 3, "number": 1.5, "boolean": True}
    doc = {"items": [{f"p{i}": sample[kinds[i % 4]] for i in range(50)} for _ in range(1000)]}
    return schema, doc


def ops_per_second(fn: Callable[[], Any], seconds: float) -> float:
    fn()
    count = 0
    started = time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return count / elapsed


def go_run(binary: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = "\n".join(json.dumps(r) for r in requests) + "\n"
    out = subprocess.run(
        [str(binary)],
        input=lines.encode(),
        capture_output=True,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    binary = Path(build.ensure(build.INTEROP)) / "templating"
    fields = payload()
    evaluator = Evaluator(TemplateConfig(evaluation_timeout=30, max_output_bytes=1 << 20))
    resolved = evaluator.resolve_value(fields, VARS)
    schema, doc = schema_and_doc()
    compiled = compile_schema(schema)
    assert not compiled.violations(doc)

    py_resolve = ops_per_second(lambda: evaluator.resolve_value(fields, VARS), args.seconds)
    py_schema = ops_per_second(lambda: compiled.violations(doc), args.seconds)

    iterations_resolve = max(int(py_resolve * args.seconds * 20), 200)
    go_results = go_run(
        binary,
        [
            {"id": "check", "op": "value", "value": fields, "vars": VARS},
            {
                "id": "r",
                "op": "bench_resolve",
                "value": fields,
                "vars": VARS,
                "iterations": iterations_resolve,
                "timeoutMs": 30000,
                "maxOutputBytes": 1 << 20,
            },
            {
                "id": "s",
                "op": "bench_schema",
                "schema": normalize_schema(schema),
                "doc": doc,
                "iterations": 20,
            },
            {
                "id": "c",
                "op": "bench_schema_compiled",
                "schema": normalize_schema(schema),
                "doc": doc,
                "iterations": 50,
            },
        ],
    )
    by_id = {r["id"]: r for r in go_results}
    for r in go_results:
        if not r["ok"]:
            raise SystemExit(f"Go side failed: {r}")
    # Compare as Go-JSON text: Go's numbers are float64 (3 and 3.0 are the same value).
    same = go_json(json.loads(json.dumps(by_id["check"]["value"]))) == go_json(resolved)

    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"resolve 100-field template map: bubu {py_resolve:8.1f} ops/s | Go core/templating {by_id['r']['opsPerSec']:8.1f} ops/s"
        f" (same output: {same})"
    )
    print(
        f"validate 1,000 items x 50 properties: bubu (jsonschema-rs, compiled once) {py_schema:7.1f} ops/s"
        f" | Go SDK path (gojsonschema.Validate) {by_id['s']['opsPerSec']:6.1f} ops/s"
        f" | gojsonschema compiled once {by_id['c']['opsPerSec']:6.1f} ops/s"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
