"""``bubu eval``: a template against variables, printed as Go's JSON, with Go's errors."""

from __future__ import annotations

import json

import pytest

from tests.unit.cli.test_cli import bubu

INPUTS = json.dumps({"count": 3, "items": [], "email": "ada@example.com", "big": 1e21})


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        (["{{ inputs.count }}"], "3"),
        (["{{ add inputs.count 1 }}"], '"4"'),  # a Sprig call is not one action: text
        (["--expression", "add inputs.count 1"], "4"),
        (["--condition", "{{ gt (len inputs.items) 0 }}"], "false"),
        (["--json", '{"to": "{{ inputs.email }}", "n": ["{{ inputs.big }}"]}'], None),
        (["x{{ inputs.email }}<"], '"xada@example.com<"'),
    ],
)
def test_eval_prints_the_value_as_go_json(args: list[str], printed: str | None) -> None:
    proc = bubu("eval", *args, "--inputs", INPUTS)
    assert proc.returncode == 0, proc.stderr
    if printed is None:  # keys sorted and numbers written as Go writes them
        printed = '{"n":[1e+21],"to":"ada@example.com"}'
    assert proc.stdout == printed + "\n"


def test_vars_file_and_steps_shortcut(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "vars.json"
    path.write_text(json.dumps({"inputs": {"name": "Ada"}}))
    proc = bubu(
        "eval",
        "{{ inputs.name }}-{{ steps.fetch.output.status }}",
        "--vars",
        f"@{path}",
        "--steps",
        '{"fetch": {"output": {"status": 200}}}',
    )
    assert (proc.returncode, proc.stdout) == (0, '"Ada-200"\n'), proc.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{{ nosuch }}"], 1, 'bubu: template: bubu:1: function "nosuch" not defined\n'),
        (["{{ now }}", "--deterministic"], 1, 'function "now" not defined'),
        (["{{ steps.fetch.output }}"], 1, "template evaluation blocked: missing key at steps"),
        (["--json", "{bad"], 2, "bubu: template: invalid JSON at line 1 column 2"),
        (["x", "--inputs", "[1]"], 2, "bubu: --inputs: expected a JSON object, got array\n"),
        (["x", "--timeout", "-1"], 2, "bubu: --timeout: must be >= 0\n"),
        (["x", "--condition", "--expression"], 2, "not allowed with argument"),
    ],
)
def test_errors_are_one_line_with_the_right_exit_code(
    args: list[str], code: int, message: str
) -> None:
    proc = bubu("eval", *args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""
