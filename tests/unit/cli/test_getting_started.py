"""docs/getting-started.md is executable: its console blocks run as written, in a fresh
directory, and print what the page says they print.

Each ```console block is a list of ``$ command`` lines, each followed by lines of expected output
(every expected line must appear in the command's output). ``pip install`` and ``venv`` lines
are skipped: the test runs in bubu's own environment. The page's edit step (adding a field) is
applied too, so the ``bubu schema --write`` step has something to do.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "getting-started.md"
SKIP = ("pip install", "python -m venv")


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif line.strip() and steps:
                steps[-1][1].append(line.strip())
    return steps


def test_the_getting_started_page_runs_as_written(tmp_path: Path) -> None:
    text = PAGE.read_text()
    steps = console_steps(text)
    assert len(steps) >= 8, steps
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUBU_", "PYTEST_"))}
    env.pop("FORCE_COLOR", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cwd = tmp_path
    edit = re.search(r"```python\n(class Inputs.*?)```", text, flags=re.S)
    assert edit is not None
    for command, expected in steps:
        if command.startswith(SKIP):
            continue
        if command.startswith("cd "):
            cwd = cwd / shlex.split(command)[1]
            continue
        if command.startswith("bubu schema"):
            # Step 5 of the page: the edit that makes the template stale.
            module = cwd / "hello_world.py"
            source = module.read_text()
            start = source.index("class Inputs(msgspec.Struct):")
            end = source.index("\n\n\nclass Output")
            module.write_text(source[:start] + edit.group(1).rstrip() + source[end:])
            check = subprocess.run(
                [sys.executable, "-m", "bubu", "check", "hello_world.py"],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert check.returncode == 1
            assert "spec.inputSchema.properties.excited: in the code, missing" in check.stderr
        proc = subprocess.run(
            command,
            shell=True,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        output = proc.stdout + proc.stderr
        for line in expected:
            assert line in output, f"$ {command}\n{output}"
        if not any(line.startswith("bubu:") for line in expected):
            assert proc.returncode == 0, f"$ {command}\n{output}"
