"""``bubu init``, ``bubu schema`` and ``bubu check`` end to end, in subprocesses.

The scaffolded projects are generated into a temporary directory and their own tests run there
with pytest, exactly as a new user would run them (no pytest configuration in the project).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
JSON_FILTER = ROOT / "examples" / "json-filter" / "json_filter.py"


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 240):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("BUBU_", "PYTEST_"))}
    full.pop("FORCE_COLOR", None)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("kind", "module", "template"),
    [
        ("batch", "my_filter", "Engram.yaml"),
        ("streaming", "my_filter", "Engram.yaml"),
        ("impulse", "my_filter", "Impulse.yaml"),
    ],
)
def test_scaffolded_project_tests_pass_as_generated(
    tmp_path: Path, kind: str, module: str, template: str
) -> None:
    project = tmp_path / "my-filter"
    proc = run("-m", "bubu", "init", "my-filter", "--kind", kind, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in project.iterdir())
    assert names == sorted(
        [f"{module}.py", f"test_{module}.py", template, "Dockerfile", "README.md"]
        + ["requirements.txt"]
    )
    doc = yaml.safe_load((project / template).read_text())
    assert doc["kind"] == ("ImpulseTemplate" if kind == "impulse" else "EngramTemplate")
    assert doc["metadata"]["name"] == "my-filter"
    assert f'CMD ["python", "{module}.py"]' in (project / "Dockerfile").read_text()
    # The generated tests pass, with warnings as errors, in a project with no configuration.
    tests = run("-m", "pytest", "-p", "no:cacheprovider", "-W", "error", "-q", cwd=project)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout, tests.stdout


def test_scaffolded_batch_runs_with_bubu_run(tmp_path: Path) -> None:
    assert run("-m", "bubu", "init", "greeter", cwd=tmp_path).returncode == 0
    proc = run(
        "-m", "bubu", "run", "greeter.py", "--inputs", '{"name": "Ada"}', cwd=tmp_path / "greeter"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"greeting": "Hello, Ada!"}


def test_init_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    assert run("-m", "bubu", "init", "x1", cwd=tmp_path).returncode == 0
    again = run("-m", "bubu", "init", "x1", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    bad = run("-m", "bubu", "init", "1abc", cwd=tmp_path)
    assert bad.returncode == 2 and "must start with a letter" in bad.stderr
    forced = run("-m", "bubu", "init", "x1", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr


def test_schema_prints_the_template_fields_as_yaml_or_json() -> None:
    proc = run("-m", "bubu", "schema", str(JSON_FILTER))
    assert proc.returncode == 0, proc.stderr
    fields = yaml.safe_load(proc.stdout)
    assert set(fields) == {"configSchema", "inputSchema", "outputSchema", "secretSchema"}
    select = fields["inputSchema"]["properties"]["select"]
    assert select["properties"]["requireMatch"] == {
        "type": "boolean",
        "description": "Fail when nothing matches",
        "default": True,
    }
    assert fields["inputSchema"]["properties"]["input"]["x-kubernetes-preserve-unknown-fields"]
    as_json = run("-m", "bubu", "schema", str(JSON_FILTER), "--format", "json")
    assert json.loads(as_json.stdout) == fields


def test_the_json_filter_template_matches_its_code() -> None:
    proc = run("-m", "bubu", "check", str(JSON_FILTER))
    assert proc.returncode == 0, proc.stderr
    assert "matches JSONFilter (a batch engram)" in proc.stderr


def test_check_fails_with_each_difference_and_the_fix(tmp_path: Path) -> None:
    assert run("-m", "bubu", "init", "drift", cwd=tmp_path).returncode == 0
    project = tmp_path / "drift"
    doc = yaml.safe_load((project / "Engram.yaml").read_text())
    doc["spec"]["inputSchema"]["properties"]["name"]["type"] = "integer"
    del doc["spec"]["outputSchema"]["properties"]["greeting"]
    doc["spec"]["supportedModes"] = ["job", "deployment"]
    (project / "Engram.yaml").write_text(yaml.safe_dump(doc))
    proc = run("-m", "bubu", "check", "drift.py", cwd=project)
    assert proc.returncode == 1
    err = proc.stderr
    assert (
        'spec.inputSchema.properties.name.type: the template has "integer", the code has "string"'
        in err
    )
    assert "spec.outputSchema.properties.greeting: in the code, missing from the template" in err
    assert "cannot run as deployment" in err
    assert "bubu schema drift.py --write" in err
    # The suggested fix works (modes are the template's own business and are kept).
    doc["spec"]["supportedModes"] = ["job"]
    (project / "Engram.yaml").write_text(yaml.safe_dump(doc))
    fix = run("-m", "bubu", "schema", "drift.py", "--write", "Engram.yaml", cwd=project)
    assert fix.returncode == 0, fix.stderr
    assert run("-m", "bubu", "check", "drift.py", cwd=project).returncode == 0


def test_check_refuses_a_template_of_the_wrong_kind(tmp_path: Path) -> None:
    assert run("-m", "bubu", "init", "tick", "--kind", "impulse", cwd=tmp_path).returncode == 0
    project = tmp_path / "tick"
    doc = yaml.safe_load((project / "Impulse.yaml").read_text())
    doc["kind"] = "EngramTemplate"
    (project / "Engram.yaml").write_text(yaml.safe_dump(doc))
    proc = run("-m", "bubu", "check", "tick.py", "Engram.yaml", cwd=project)
    assert proc.returncode == 1
    assert "needs an ImpulseTemplate" in proc.stderr


def test_check_names_a_missing_or_broken_template(tmp_path: Path) -> None:
    assert run("-m", "bubu", "init", "lost", cwd=tmp_path).returncode == 0
    project = tmp_path / "lost"
    (project / "Engram.yaml").unlink()
    proc = run("-m", "bubu", "check", "lost.py", cwd=project)
    assert proc.returncode == 2 and "bubu schema lost.py --write" in proc.stderr
    (project / "Engram.yaml").write_text("spec: [unclosed\n")
    proc = run("-m", "bubu", "check", "lost.py", cwd=project)
    assert proc.returncode == 2 and "invalid YAML at line" in proc.stderr


def test_output_is_plain_when_piped_and_coloured_on_request(tmp_path: Path) -> None:
    plain = run("-m", "bubu", "check", str(JSON_FILTER))
    assert "\x1b[" not in plain.stderr and plain.stderr.startswith("ok: ")
    coloured = run("-m", "bubu", "check", str(JSON_FILTER), env={"FORCE_COLOR": "1"})
    assert "\x1b[32m✓\x1b[0m" in coloured.stderr


def test_a_terminal_gets_colour_and_progress(tmp_path: Path) -> None:
    import pty

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    for name in ("FORCE_COLOR", "NO_COLOR"):
        env.pop(name, None)
    env["TERM"] = "xterm"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bubu", "init", "tty-demo"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            timeout=120,
            check=False,
        )
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    text = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "\x1b[2mscaffolding a batch component in tty-demo/\x1b[0m" in text  # progress, dimmed
    assert "\x1b[32m✓\x1b[0m wrote tty-demo/tty_demo.py" in text
