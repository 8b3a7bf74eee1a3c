"""The ``bubu run`` local runner, end to end in subprocesses (exit codes, stdout, stderr)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HELLO = ROOT / "examples" / "hello.py"
SECRET = "tok-9f8e7d6c5b4a"


def bubu(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bubu", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
    )


ENGRAMS = textwrap.dedent("""
    import asyncio, json, time, msgspec, bubu
    from bubu.errors import EngramError

    class Inputs(msgspec.Struct):
        mode: str = "ok"

    class Tool(bubu.BatchEngram[dict, Inputs]):
        async def init(self, config, secrets):
            self.secrets = secrets

        async def process(self, ctx, inputs):
            if inputs.mode == "raise":
                raise RuntimeError("kaput " + (self.secrets.get("api") or ""))
            if inputs.mode == "sleep":
                print("READY", flush=True)
                await asyncio.sleep(30)
            if inputs.mode == "log":
                ctx.logger.warning("token is %s", self.secrets.get("api"))
            if inputs.mode == "block":
                time.sleep(1.5)   # blocking code: the deadline timer cannot fire meanwhile
                return bubu.Result({"finished": True})
            if inputs.mode == "stubborn":
                print("READY", flush=True)
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    print("IGNORING", flush=True)
                    await asyncio.sleep(30)   # ignores the first stop request
            if inputs.mode == "escaped":
                token = self.secrets.get("api")
                ctx.logger.warning("request %s", json.dumps({"body": json.dumps({"auth": token})}))
                ctx.logger.warning("secrets %r", {"api": token})
                print("headers:", repr({"Authorization": token}), flush=True)
                raise RuntimeError(f"refused {[token]!r}")
            return bubu.Result({"secret_len": len(self.secrets.get("api") or "")})

    class Other(Tool):
        pass
""")


@pytest.fixture
def engrams(tmp_path: Path) -> Path:
    path = tmp_path / "tools.py"
    path.write_text(ENGRAMS)
    return path


def test_run_hello_prints_json_and_exits_0() -> None:
    proc = bubu("run", str(HELLO), "--inputs", '{"name": "Ada"}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"greeting": "Hello, Ada!"}
    # The engram's own log line shows (JSON, on stderr); the SDK's lifecycle lines do not.
    logs = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(e["logger"], e["msg"]) for e in logs] == [("bubu.engram", "greeting Ada")]


def test_run_with_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"greeting": "Hi"}')
    proc = bubu("run", f"{HELLO}:HelloEngram", "--inputs", '{"name": "Bo"}', "--config", f"@{cfg}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"greeting": "Hi, Bo!"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--inputs", '{"name": 5x}'],
            "bubu: --inputs: invalid JSON at line 1 column 11: Expecting ',' delimiter",
        ),
        (["--inputs", "[1]"], "bubu: --inputs: expected a JSON object, got array"),
        (["--inputs", "@/nonexistent.json"], "bubu: --inputs: cannot read /nonexistent.json"),
        (["--inputs", "{}", "--secret", "novalue"], "bubu: --secret: expected name=value"),
        (["--inputs", "{}", "--timeout", "soon"], "bubu: --timeout:"),
        (["--bogus"], "bubu: unrecognized arguments: --bogus (see 'bubu --help')"),
        (["--inputs"], "bubu: argument --inputs: expected one argument (see 'bubu run --help')"),
    ],
)
def test_bad_cli_input_is_one_line_exit_2(args: list[str], expected: str) -> None:
    proc = bubu("run", str(HELLO), *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    assert "Traceback" not in proc.stderr


def test_decode_error_names_json_path_exit_1() -> None:
    proc = bubu("run", str(HELLO), "--inputs", '{"name": [1]}')
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["bubu: inputs: $.name: expected str, got array"]
    assert proc.stdout == ""


def test_engram_exception_exits_1_without_traceback(engrams: Path) -> None:
    proc = bubu("run", f"{engrams}:Tool", "--inputs", '{"mode": "raise"}')
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["bubu: step failed: RuntimeError: kaput"]
    assert "Traceback" not in proc.stderr


def test_timeout_exits_124(engrams: Path) -> None:
    proc = bubu("run", f"{engrams}:Tool", "--inputs", '{"mode": "sleep"}', "--timeout", "0.2")
    assert proc.returncode == 124
    assert "timed out after 200ms" in proc.stderr


def test_several_engrams_need_a_selector(engrams: Path) -> None:
    proc = bubu("run", str(engrams), "--inputs", "{}")
    assert proc.returncode == 2
    assert "several engrams (Other, Tool)" in proc.stderr


def test_missing_file() -> None:
    proc = bubu("run", "nope.py")
    assert proc.returncode == 2 and proc.stderr.strip() == "bubu: nope.py: no such file"


@pytest.mark.parametrize("mode", ["raise", "log", "ok"])
def test_secret_values_never_printed(engrams: Path, mode: str) -> None:
    proc = bubu(
        "run",
        f"{engrams}:Tool",
        "--inputs",
        json.dumps({"mode": mode}),
        "--secret",
        f"api={SECRET}",
        "--debug",
    )
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
    if mode == "ok":
        assert proc.returncode == 0 and json.loads(proc.stdout) == {"secret_len": len(SECRET)}
    elif mode == "log":
        assert "token is [REDACTED]" in proc.stderr
    else:
        assert proc.returncode == 1 and "[REDACTED]" in proc.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_writes_terminal_status_and_exits_128_plus_n(
    engrams: Path, sig: signal.Signals, code: int
) -> None:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bubu", "run", f"{engrams}:Tool", "--inputs", '{"mode": "sleep"}'],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    started = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == code
    assert time.monotonic() - started < 10
    assert f"step failed: step interrupted by {sig.name}" in err


def test_python_dash_m_hello_runs_locally() -> None:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    full_env["BUBU_TRIGGER_DATA"] = '{"name": "Cy"}'
    proc = subprocess.run(
        [sys.executable, str(HELLO)],
        check=False,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any(e.get("msg") == "greeting Cy" for e in lines)


def test_no_command_prints_help_exit_2() -> None:
    proc = bubu()
    assert proc.returncode == 2 and "run" in proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run"], "bubu: the following arguments are required: target (see 'bubu run --help')"),
        (["frob"], "bubu: argument COMMAND: invalid choice: 'frob'"),
    ],
)
def test_usage_errors_are_one_line_without_usage_block(args: list[str], expected: str) -> None:
    proc = bubu(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr


def test_invalid_env_value_warning_names_the_variable() -> None:
    # An ignored invalid BUBU_* value is a JSON warning on stderr that names the variable;
    # the run still succeeds with the default (docs/contract/runtime-environment.md#parse-rules).
    proc = bubu("run", str(HELLO), "--inputs", '{"name": "Ada"}', env={"BUBU_STEP_TIMEOUT": "soon"})
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"greeting": "Hello, Ada!"}
    warnings = [json.loads(x) for x in proc.stderr.splitlines() if '"WARNING"' in x]
    assert [(w["env"], w["msg"]) for w in warnings] == [
        (
            "BUBU_STEP_TIMEOUT",
            "ignoring invalid env var duration BUBU_STEP_TIMEOUT='soon', using default 30m0s",
        )
    ]


def test_unusable_env_value_is_one_line_naming_the_variable() -> None:
    proc = bubu("run", str(HELLO), "--inputs", "{}", env={"BUBU_MAX_INLINE_SIZE": "big"})
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bubu: invalid BUBU_MAX_INLINE_SIZE 'big'")


def test_blocking_call_past_the_deadline_is_a_timeout(engrams: Path) -> None:
    # issue 12 item 5: time.sleep(1.5) under a 0.5 s timeout was reported as success, exit 0.
    proc = bubu("run", f"{engrams}:Tool", "--inputs", '{"mode": "block"}', "--timeout", "500ms")
    assert proc.returncode == 124, proc.stderr
    assert "bubu: timed out: batch execution timed out after 500ms" in proc.stderr
    assert proc.stdout == ""


def test_second_sigint_ends_without_a_traceback_and_reports_the_terminal_status(
    engrams: Path,
) -> None:
    # issue 12 item 6: a second Ctrl-C printed a traceback, exited 1 and wrote no status.
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bubu", "run", f"{engrams}:Tool", "--inputs", '{"mode":"stubborn"}'],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "IGNORING"  # the first stop request was seen
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "bubu: step failed: step interrupted by SIGINT before it finished" in err


SPECIAL = 'p@ss"w\\ord-ünï-42'
"""A secret whose escaped forms differ from its raw form (quote, backslash, non-ASCII)."""


def test_escaped_and_embedded_secret_forms_never_printed(engrams: Path) -> None:
    # issue 12 item 7: a secret inside a repr or JSON-escaped was printed in clear.
    proc = bubu(
        "run",
        f"{engrams}:Tool",
        "--inputs",
        '{"mode": "escaped"}',
        "--secret",
        f"api={SPECIAL}",
        "--verbose",
    )
    assert proc.returncode == 1, proc.stderr
    forms = {
        SPECIAL,
        json.dumps(SPECIAL)[1:-1],
        json.dumps(json.dumps(SPECIAL)[1:-1])[1:-1],
        repr(SPECIAL)[1:-1],
    }
    for where, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        for form in forms:
            assert form not in text, (where, form)
        assert "ord-" not in text, where
    assert "headers: {'Authorization': '[REDACTED]'}" in proc.stdout
    assert proc.stderr.count("[REDACTED]") >= 3


IMPULSE = textwrap.dedent("""
    import logging, bubu

    class Leaky(bubu.Impulse[dict]):
        async def init(self, config, secrets):
            self.token = secrets.get("api")

        async def run(self, client):
            logging.getLogger("leaky").warning("token %r", self.token)
            print("token:", self.token, flush=True)
            await client.start_story(inputs={"auth": self.token})
            raise RuntimeError(f"listener failed: {self.token!r}")
""")


def test_local_impulse_run_masks_secrets_in_logs_output_and_errors(tmp_path: Path) -> None:
    # bubu run for impulses goes through the same start-up as every other mode.
    path = tmp_path / "leaky_impulse.py"
    path.write_text(IMPULSE)
    proc = bubu(
        "run",
        f"{path}:Leaky",
        "--secret",
        f"api={SPECIAL}",
        env={"BUBU_TARGET_STORY_NAME": "deploy"},
    )
    assert proc.returncode == 1, proc.stderr
    for where, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        assert "ord-" not in text, (where, text)
    assert "token: [REDACTED]" in proc.stdout
    assert '{"auth": "[REDACTED]"}' in proc.stdout  # the StoryTrigger line
    logs = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    assert any(e["msg"] == "token '[REDACTED]'" and e["mode"] == "impulse" for e in logs)
